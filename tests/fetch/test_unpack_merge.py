"""Unpacking archives with member selection, gunzip, and merging a day's files atomically."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hpc_workflows.fetch import merge_daily, remove_workdir, unpack

PRODUCTS = ("rainrate_composite", "qualityproduct_composite")


def _netcdf_bytes(tmp: Path, product: str, hour: int) -> bytes:
    times = pd.date_range(f"2020-02-14T{hour:02d}:00", periods=3, freq="5min")
    data = np.arange(3 * 2 * 4, dtype="float32").reshape(3, 2, 4) + hour
    ds = xr.Dataset({product: (("time", "y", "x"), data, {"units": "mm/h"})}, coords={"time": times})
    path = tmp / f"{product}_{hour}.nc"
    ds.to_netcdf(path)
    return path.read_bytes()


def _day_tar(tmp: Path, mode: str = "w:gz") -> Path:
    """A day's archive like the radar one: gzipped netCDF members of several products."""
    scratch = tmp / "scratch"
    scratch.mkdir()
    path = tmp / "20200214.tar.gz"
    with tarfile.open(path, mode) as tar:
        for product in PRODUCTS + ("other_product",):
            for hour in (12, 0, 6):  # out of order on purpose
                raw = gzip.compress(_netcdf_bytes(scratch, product, hour))
                info = tarfile.TarInfo(f"radar/{hour:02d}/metoffice-c-band-{product}_{hour:02d}00.nc.gz")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    return path


def test_tar_members_selected_gunzipped_and_merged(tmp_path):
    archive = _day_tar(tmp_path)
    files = unpack(archive, tmp_path / "work", [f"*{p}*" for p in PRODUCTS])
    assert len(files) == 6 and all(f.suffix == ".nc" for f in files)
    assert not any("other_product" in f.name for f in files)
    rain = [f for f in files if "rainrate" in f.name]
    out = merge_daily(rain, tmp_path / "merged" / "rainrate_composite_20200214.nc")
    with xr.open_dataset(out) as ds:
        assert ds.sizes["time"] == 9
        assert pd.Index(ds.time.values).is_monotonic_increasing
        assert float(ds.rainrate_composite.isel(time=0).max()) == 7.0  # hour 0 data first
        assert ds.rainrate_composite.attrs["units"] == "mm/h"
    assert not list((tmp_path / "merged").glob("*.part"))


def test_unpack_and_merge_skip_complete_work(tmp_path):
    archive = _day_tar(tmp_path)
    files = unpack(archive, tmp_path / "work", ["*rainrate*"])
    stamps = {f: f.stat().st_mtime_ns for f in files}
    assert unpack(archive, tmp_path / "work", ["*rainrate*"]) == files
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    out = merge_daily(files, tmp_path / "m.nc")
    stamp = out.stat().st_mtime_ns
    assert merge_daily(files, tmp_path / "m.nc").stat().st_mtime_ns == stamp


def test_merge_redone_when_inputs_change(tmp_path):
    files = unpack(_day_tar(tmp_path), tmp_path / "work", ["*rainrate*"])
    merge_daily(files[:2], tmp_path / "m.nc")
    with xr.open_dataset(merge_daily(files, tmp_path / "m.nc")) as ds:
        assert ds.sizes["time"] == 9


def test_merge_replaces_a_corrupt_output(tmp_path):
    files = unpack(_day_tar(tmp_path), tmp_path / "work", ["*rainrate*"])
    (tmp_path / "m.nc").write_bytes(b"truncated garbage")
    with xr.open_dataset(merge_daily(files, tmp_path / "m.nc")) as ds:
        assert ds.sizes["time"] == 9


def test_zip_and_single_gz(tmp_path):
    raw = _netcdf_bytes(tmp_path, "rainrate_composite", 0)
    zpath = tmp_path / "day.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("a/rainrate_composite.nc.gz", gzip.compress(raw))
        zf.writestr("a/readme.txt", "hello")
    (out,) = unpack(zpath, tmp_path / "wz", ["*.nc.gz"])
    assert out.read_bytes() == raw and out.name == "rainrate_composite.nc"
    gz = tmp_path / "single.nc.gz"
    gz.write_bytes(gzip.compress(raw))
    (out,) = unpack(gz, tmp_path / "wg")
    assert out.read_bytes() == raw and out.name == "single.nc"


def test_plain_file_passes_through(tmp_path):
    path = tmp_path / "x.nc"
    path.write_bytes(_netcdf_bytes(tmp_path, "p", 0))
    assert unpack(path, tmp_path / "w") == [path]
    assert unpack(path, tmp_path / "w", ["*.grib"]) == []


def test_hostile_member_paths_are_refused(tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="outside"):
        unpack(path, tmp_path / "w")
    assert not (tmp_path.parent / "escape.txt").exists()


def test_corrupt_archive_names_the_file(tmp_path):
    archive = _day_tar(tmp_path)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="bad.tar.gz"):
        unpack(bad, tmp_path / "w")


def test_merge_errors_name_the_files(tmp_path):
    with pytest.raises(ValueError, match="no input files"):
        merge_daily([], tmp_path / "o.nc")
    with pytest.raises(ValueError, match="missing"):
        merge_daily([tmp_path / "none.nc"], tmp_path / "o.nc")


def test_remove_workdir_keeps_outputs(tmp_path):
    work = tmp_path / "extract"
    (work / "a").mkdir(parents=True)
    (work / "a" / "f").write_text("x")
    kept = tmp_path / "merged.nc"
    kept.write_text("y")
    remove_workdir(work, keep=[kept])
    assert not work.exists() and kept.exists()
    with pytest.raises(ValueError, match="refusing"):
        remove_workdir(tmp_path, keep=[kept])
    assert kept.exists()
