"""Bad input is refused before any work, naming the file: truncated netCDF-3, random bytes,
damaged GRIB, and a missing optional reader (a real failed import in a child interpreter)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.formats import FormatError, MissingReaderError, check_readable, detect
from hpc_workflows.formats.netcdf import classic_expected_size
from hpc_workflows.preprocess import PreprocessSettings, preprocess_file
from tests.conftest import REPO
from tests.formats.nimrod_files import write_nimrod

NC3_FORMATS = ("NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA")


def _write(path, nc_format: str = "NETCDF3_CLASSIC", records: int = 4, record_vars: int = 2):
    """A small lat/lon file with a record (unlimited) time dimension, written by netCDF-C."""
    import netCDF4

    with netCDF4.Dataset(path, "w", format=nc_format) as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 13)
        nc.createDimension("lon", 36)
        nc.createVariable("time", "f8", ("time",))[:] = np.arange(records)
        nc["time"].units = "hours since 2020-02-14"
        nc.createVariable("lat", "f8", ("lat",))[:] = np.linspace(-60, 60, 13)
        nc["lat"].units = "degrees_north"
        nc.createVariable("lon", "f8", ("lon",))[:] = np.linspace(0, 350, 36)
        nc["lon"].units = "degrees_east"
        nc.createVariable("orography", "f8", ("lat", "lon"))[:] = 1.0
        for i in range(record_vars):
            var = nc.createVariable(f"v{i}", "f4", ("time", "lat", "lon"))
            var.units = "K"
            var[:] = np.full((records, 13, 36), 280.0 + i, "float32")
    return path


@pytest.mark.parametrize("nc_format", NC3_FORMATS)
@pytest.mark.parametrize("record_vars", [1, 2])
def test_whole_classic_files_pass_and_sizes_match_the_header(tmp_path, nc_format, record_vars):
    path = _write(tmp_path / "ok.nc", nc_format, record_vars=record_vars)
    expected = classic_expected_size(path)
    # netCDF-C writes exactly what the header describes (at most the last value's padding).
    assert path.stat().st_size - 4 < expected <= path.stat().st_size
    assert check_readable(path) == "netcdf"


@pytest.mark.parametrize("nc_format", NC3_FORMATS)
def test_truncated_netcdf3_is_refused_naming_the_file(tmp_path, nc_format):
    path = _write(tmp_path / "recall_20200214.nc", nc_format)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4 * 13 * 36])  # the last record half gone
    # What happens without the check: netCDF-C reads the missing bytes as fill/zeros, silently.
    with xr.open_dataset(path) as ds:
        assert ds.sizes["time"] == 4
    with pytest.raises(FormatError) as info:
        check_readable(path)
    msg = str(info.value)
    assert "recall_20200214.nc" in msg and "truncated" in msg and str(len(data)) in msg


def test_truncated_netcdf3_header_is_refused(tmp_path):
    path = _write(tmp_path / "h.nc")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(FormatError, match=r"h\.nc.*(cut short|truncated)"):
        check_readable(path)


def test_truncated_netcdf4_is_refused(tmp_path):
    path = _write(tmp_path / "n4.nc", "NETCDF4")
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(FormatError, match=r"n4\.nc"):
        check_readable(path)


def test_random_bytes_name_the_file_and_the_formats_tried(tmp_path):
    path = tmp_path / "20200214.nc"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(FormatError) as info:
        detect(path)
    msg = str(info.value)
    assert "20200214.nc" in msg
    for label in ("netCDF", "NIMROD", "PP", "GRIB"):
        assert label in msg
    assert "engine" not in msg


def test_damaged_grib_is_refused(tmp_path, sample_data):
    raw = (sample_data / "polar_stereo.grib2").read_bytes()
    cut = tmp_path / "cut.grib2"
    cut.write_bytes(raw[:-100])
    with pytest.raises(FormatError, match=r"cut\.grib2.*truncated"):
        check_readable(cut)


def _settings() -> PreprocessSettings:
    return PreprocessSettings(target="global_1deg", method="bilinear")


def test_preprocess_refuses_truncated_netcdf3(tmp_path):
    path = _write(tmp_path / "in.nc")
    path.write_bytes(path.read_bytes()[:-3000])
    out = tmp_path / "out.nc"
    with pytest.raises(FormatError, match=r"in\.nc.*truncated"):
        preprocess_file(path, out, _settings(), input_sha256="0" * 64)
    assert not out.exists()


def test_preprocess_refuses_random_bytes_and_unconverted_formats(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(FormatError, match=r"junk\.nc.*tried netCDF, NIMROD"):
        preprocess_file(junk, tmp_path / "o.nc", _settings(), input_sha256="0" * 64)
    radar = write_nimrod(tmp_path / "radar.nc", np.zeros((3, 4), "int16"),
                         validity=dt.datetime(2020, 2, 14))
    with pytest.raises(FormatError, match=r"radar\.nc is NIMROD.*to_netcdf"):
        preprocess_file(radar, tmp_path / "o.nc", _settings(), input_sha256="0" * 64)


def test_missing_reader_names_the_extra(tmp_path, sample_data):
    """In a child interpreter where iris cannot be imported (as without the extra)."""
    code = (
        "import sys; sys.modules['iris'] = None\n"
        "from hpc_workflows.formats import check_readable, MissingReaderError\n"
        f"try:\n    check_readable({str(sample_data / 'air_temp.pp')!r})\n"
        "except MissingReaderError as e:\n    print(e); raise SystemExit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "air_temp.pp" in proc.stdout and "hpc_workflows[formats]" in proc.stdout
    assert issubclass(MissingReaderError, FormatError)
