"""NIMROD (plain and gzipped) to CF netCDF: values, grid, projection, times and missing data
checked against an independent numpy reading of the same bytes (tests/formats/nimrod_files.py)."""

from __future__ import annotations

import datetime as dt
import gzip

import numpy as np
import pyproj
import pytest
import xarray as xr

from hpc_workflows.formats import FormatError, check_readable, detect, to_netcdf
from tests.formats.nimrod_files import nimrod_bytes, read_nimrod, write_nimrod

VALID = dt.datetime(2020, 2, 14, 12, 5)
REFERENCE = dt.datetime(2020, 2, 14, 12, 0)


def _field(rows: int = 7, cols: int = 9, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 3200, (rows, cols)).astype("int16")
    data[0, 0] = data[3, 4] = -1  # no radar cover: the top-left corner and one inner cell
    return data


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzipped"])
def test_nimrod_converts_with_values_grid_and_times(tmp_path, compress):
    # A misleading name: the format must come from the content.
    src = write_nimrod(tmp_path / "radar_1205.dat.nc", _field(), validity=VALID,
                       reference=REFERENCE, compress=compress)
    assert detect(src) == "nimrod"
    assert check_readable(src) == "nimrod"
    out = tmp_path / "out" / "radar.nc"
    assert to_netcdf(src, out) == "nimrod"
    truth = read_nimrod(src)

    with xr.open_dataset(out) as ds:
        (name,) = [n for n in ds.data_vars if ds[n].ndim == 3]
        da = ds[name]
        assert da.dims == ("time", "projection_y_coordinate", "projection_x_coordinate")
        # Values: int16 / 32 in mm/h, no-cover cells NaN (a declared _FillValue, not 9.97e36).
        np.testing.assert_array_equal(da.values[0], truth["data"].astype("float32"))
        assert int(np.isnan(da.values).sum()) == 2
        assert da.attrs["units"] == "mm/h"
        assert "_FillValue" in da.encoding
        # Grid: cell centres from the header, rows south to north.
        np.testing.assert_array_equal(ds["projection_x_coordinate"].values, truth["x"])
        np.testing.assert_array_equal(ds["projection_y_coordinate"].values, truth["y"])
        assert ds["projection_x_coordinate"].attrs["units"] == "m"
        # Times: validity (with the 5-minute accumulation window), reference and period.
        assert ds.sizes["time"] == 1
        assert ds["time"].values[0] == np.datetime64(VALID)
        np.testing.assert_array_equal(
            ds[ds["time"].attrs["bounds"]].values[0],
            [np.datetime64(VALID - dt.timedelta(minutes=5)), np.datetime64(VALID)],
        )
        assert ds["forecast_reference_time"].values[0] == np.datetime64(REFERENCE)
        assert ds["forecast_reference_time"].dims == ("time",)
        assert int(ds["forecast_period"].values[0]) == 300
        # Projection: the grid mapping is the British National Grid (EPSG:27700 on its own
        # datum, OSGB36): projecting the corners with both gives the same lon/lat.
        crs = pyproj.CRS.from_cf(ds[da.attrs["grid_mapping"]].attrs)
    x, y = np.meshgrid(truth["x"][[0, -1]], truth["y"][[0, -1]])
    ours = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
    bng = pyproj.Transformer.from_crs("EPSG:27700", "EPSG:4277", always_xy=True).transform(x, y)
    np.testing.assert_allclose(ours, bng, atol=1e-9)
    # ... and the datum is OSGB36 (crs_wkt), so placing it in WGS84 applies the ~100 m shift.
    assert crs.to_epsg() == 27700
    wgs84 = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    np.testing.assert_allclose(
        wgs84, pyproj.Transformer.from_crs("EPSG:27700", "EPSG:4326", always_xy=True).transform(x, y),
        atol=1e-9)
    assert not list(out.parent.glob("*.part")) and not list(out.parent.glob(".*"))


def test_truncated_nimrod_is_refused_naming_the_file(tmp_path):
    raw = nimrod_bytes(_field(), validity=VALID)
    cut = tmp_path / "cut.nimrod"
    cut.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(FormatError, match=r"cut\.nimrod.*truncated"):
        check_readable(cut)
    with pytest.raises(FormatError, match=r"cut\.nimrod"):
        to_netcdf(cut, tmp_path / "o.nc")
    assert not (tmp_path / "o.nc").exists()


def test_forced_format_that_does_not_match_names_file_and_format(tmp_path):
    src = write_nimrod(tmp_path / "r.nimrod", _field(), validity=VALID)
    with pytest.raises(FormatError, match=r"r\.nimrod: source.format is 'grib' but the file is NIMROD"):
        to_netcdf(src, tmp_path / "o.nc", format="grib")


def test_forcing_another_format_than_the_content_is_refused(tmp_path):
    src = write_nimrod(tmp_path / "r.nc", _field(), validity=VALID)
    with pytest.raises(FormatError, match=r"r\.nc: source.format is 'netcdf' but the file is NIMROD"):
        check_readable(src, "netcdf")


def test_damaged_gzip_is_refused_naming_the_file(tmp_path):
    raw = gzip.compress(nimrod_bytes(_field(), validity=VALID))
    cut = tmp_path / "cut.dat.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match=r"cut\.dat\.gz"):
        to_netcdf(cut, tmp_path / "o.nc")
    assert not (tmp_path / "o.nc").exists() and not list(tmp_path.glob(".o.nc*"))
