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


# --- issue 16 point 6: members that cannot be read, or share timestamps, are named --------


def test_unreadable_member_is_named_with_the_formats_tried(tmp_path):
    files = unpack(_day_tar(tmp_path), tmp_path / "work", ["*rainrate*"])
    bad = files[1]
    bad.write_bytes(np.random.default_rng(3).bytes(5000))  # a member damaged in the archive
    with pytest.raises(ValueError) as info:
        merge_daily(files, tmp_path / "m.nc")
    msg = str(info.value)
    assert bad.name in msg and "NIMROD" in msg and "GRIB" in msg
    assert "engine" not in msg
    assert not (tmp_path / "m.nc").exists()


def test_members_sharing_a_timestamp_are_named(tmp_path):
    scratch = tmp_path / "s"
    scratch.mkdir()
    first = tmp_path / "a_1200.nc"
    first.write_bytes(_netcdf_bytes(scratch, "rainrate_composite", 12))
    again = tmp_path / "b_1205.nc"  # another member holding 12:05 again (and 12:10)
    again.write_bytes(_netcdf_bytes(scratch, "rainrate_composite", 12))
    with pytest.raises(ValueError) as info:
        merge_daily([first, again], tmp_path / "m.nc")
    msg = str(info.value)
    assert "a_1200.nc" in msg and "b_1205.nc" in msg and "2020-02-14" in msg
    assert not (tmp_path / "m.nc").exists()


# --- issue 15: archive members in NIMROD and PP are merged like netCDF ones -----------------


def _nimrod_day_tar(tmp: Path, hours=(12, 0, 6)) -> Path:
    """A day's tar of gzipped NIMROD files, two products, 5-minute steps, out of order."""
    import datetime as dt

    from tests.formats.nimrod_files import nimrod_bytes

    path = tmp / "20200214.tar"
    with tarfile.open(path, "w") as tar:
        for product, code in (("rainrate_composite", 213), ("qualityproduct_composite", 214)):
            for hour in hours:
                for minute in (0, 5):
                    data = np.full((5, 6), hour * 32 + minute, "int16")
                    data[0, :2] = -1
                    raw = gzip.compress(nimrod_bytes(
                        data, validity=dt.datetime(2020, 2, 14, hour, minute), field_code=code))
                    info = tarfile.TarInfo(f"nimrod/{hour:02d}/{hour:02d}{minute:02d}_{product}.dat.gz")
                    info.size = len(raw)
                    tar.addfile(info, io.BytesIO(raw))
    return path


def test_nimrod_members_are_converted_and_merged(tmp_path):
    from tests.formats.nimrod_files import read_nimrod

    files = unpack(_nimrod_day_tar(tmp_path), tmp_path / "work", ["*rainrate*"])
    assert len(files) == 6
    out = merge_daily(files, tmp_path / "merged" / "rainrate_composite_20200214.nc")
    with xr.open_dataset(out) as ds:
        (name,) = [n for n in ds.data_vars if ds[n].ndim == 3]
        assert ds.sizes["time"] == 6 and pd.Index(ds.time.values).is_monotonic_increasing
        assert ds.time.values[0] == np.datetime64("2020-02-14T00:00")
        assert ds["forecast_reference_time"].dims == ("time",)
        for step, path in enumerate(sorted(files, key=lambda f: read_nimrod(f)["validity"])):
            np.testing.assert_array_equal(ds[name].values[step], read_nimrod(path)["data"])
        assert ds[name].attrs["units"] == "mm/h" and "grid_mapping" in ds[name].attrs
    # The conversions were scratch: only the merged file is left.
    assert sorted(p.name for p in (tmp_path / "merged").iterdir()) == ["rainrate_composite_20200214.nc"]


def test_pp_members_are_merged_along_time(tmp_path):
    import iris_sample_data

    um = Path(iris_sample_data.__file__).parent / "sample_data" / "UM"
    members = sorted(um.glob("northward_sea_ice_velocity.1890.0[1-3]*.pp"))
    assert len(members) == 3
    out = merge_daily(members[::-1], tmp_path / "m.nc", format="pp")
    with xr.open_dataset(out, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
        assert ds.sizes["time"] == 3
        assert [t.month for t in ds.time.values] == [1, 2, 3]
        assert ds["northward_sea_ice_velocity"].attrs["units"] == "m s-1"
        assert ds[ds.time.attrs["bounds"]].shape == (3, 2)
