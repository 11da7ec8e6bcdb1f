"""preprocess_file decides the streaming path from netCDF4 alone, and falls back to the
xarray path whenever it cannot be sure; weights files are verified once per process."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from hpc_workflows.preprocess import PreprocessSettings, preprocess_file

from .datasets import centres, latlon_dataset

TARGET = {"kind": "global", "resolution": 30.0}
# Stamps that say when, not what: they differ between any two writes.
_WHEN = ("history", "hpc_workflows_created")


def _source(path: Path, ntime: int = 4, calendar: str | None = None) -> Path:
    ds = latlon_dataset(centres(-90, 90, 10.0), centres(0, 360, 10.0), ntime=ntime)
    if calendar:
        ds.time.attrs["calendar"] = calendar
    ds.to_netcdf(path)
    return path


def _settings(tmp_path: Path, **kw) -> PreprocessSettings:
    return PreprocessSettings(target=TARGET, weights_dir=str(tmp_path / "w"), **kw)


def _content(path: Path) -> tuple[dict, dict]:
    """Global attributes (without the when-stamps) and every variable's attrs and values."""
    with netCDF4.Dataset(path) as nc:
        glob = {k: str(nc.getncattr(k)) for k in nc.ncattrs() if k not in _WHEN}
        variables = {n: ({k: str(v.getncattr(k)) for k in v.ncattrs()}, v.dimensions,
                         np.ma.filled(v[:], np.nan).tolist()) for n, v in nc.variables.items()}
    return glob, variables


def test_whole_file_streams_without_dask_and_equals_the_xarray_path(tmp_path: Path) -> None:
    src = _source(tmp_path / "in.nc")
    fast, general = tmp_path / "fast" / "o.nc", tmp_path / "general" / "o.nc"
    code = ("import sys, datetime as dt; from pathlib import Path; "
            "from hpc_workflows.preprocess import PreprocessSettings, preprocess_file; "
            f"s = PreprocessSettings(target={TARGET!r}, weights_dir={str(tmp_path / 'w')!r}, "
            "window_start=dt.datetime(1999, 12, 31), window_end=dt.datetime(2000, 1, 1, 23, 59, 59)); "
            f"r = preprocess_file(Path({str(src)!r}), Path(sys.argv[1]), s, input_sha256='a'); "
            "print(r.time_steps, r.variables, 'dask.array' in sys.modules)")
    # The first call builds and saves the weights (xarray, dask); the second loads them.
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "first.nc")], capture_output=True,
                   text=True, check=True)
    out = subprocess.run([sys.executable, "-c", code, str(fast)], capture_output=True, text=True,
                         check=True)
    # No xarray open with dask chunks (the file was opened three times before).
    assert out.stdout.split() == ["4", "['tas']", "False"], out.stdout + out.stderr
    # check_area_means takes the xarray path, which then streams the same file.
    result = preprocess_file(src, general, _settings(
        tmp_path, check_area_means=True, window_start=dt.datetime(1999, 12, 31),
        window_end=dt.datetime(2000, 1, 1, 23, 59, 59)), input_sha256="a")
    assert result.time_steps == 4 and "tas" in result.mean_after
    fast_glob, fast_vars = _content(fast)
    general_glob, general_vars = _content(general)
    assert fast_vars == general_vars
    # Only the settings hash differs (check_area_means is a setting).
    assert {k: v for k, v in fast_glob.items() if k != "hpc_workflows_settings_sha256"} == {
        k: v for k, v in general_glob.items() if k != "hpc_workflows_settings_sha256"}
    assert fast_glob["hpc_workflows_input_sha256"] == "a"
    assert not list(fast.parent.glob("*.part")) and not list(fast.parent.glob(".*"))


@pytest.mark.parametrize("calendar", [None, "noleap"])
def test_a_window_keeps_only_its_steps(tmp_path: Path, calendar: str | None) -> None:
    # Steps at 00, 01, 02, 03 h; the window keeps 01..02 (xarray path), or all (either path).
    src = _source(tmp_path / "in.nc", calendar=calendar)
    cut = preprocess_file(src, tmp_path / "cut.nc", _settings(
        tmp_path, window_start=dt.datetime(2000, 1, 1, 1), window_end=dt.datetime(2000, 1, 1, 2, 59, 59)),
        input_sha256="a")
    assert cut.time_steps == 2
    whole = preprocess_file(src, tmp_path / "whole.nc", _settings(
        tmp_path, window_start=dt.datetime(2000, 1, 1), window_end=dt.datetime(2000, 1, 1, 23, 59, 59)),
        input_sha256="a")
    assert whole.time_steps == 4
    with pytest.raises(ValueError, match="no time steps fall inside the window"):
        preprocess_file(src, tmp_path / "none.nc", _settings(
            tmp_path, window_start=dt.datetime(2001, 1, 1), window_end=dt.datetime(2001, 1, 2)),
            input_sha256="a")


def test_requested_variables_are_checked_as_before(tmp_path: Path) -> None:
    src = _source(tmp_path / "in.nc")
    ok = preprocess_file(src, tmp_path / "o.nc", _settings(tmp_path, variables=["tas"]),
                         input_sha256="a")
    assert ok.variables == ["tas"]
    # A coordinate is not data: the xarray path refuses it, naming the field to fix.
    for wrong in (["lat"], ["nope"]):
        with pytest.raises(ValueError, match="fix regrid.variables"):
            preprocess_file(src, tmp_path / "x.nc", _settings(tmp_path, variables=wrong),
                            input_sha256="a")


def test_verified_weights_are_reused_until_the_file_changes(tmp_path: Path, caplog) -> None:
    from hpc_workflows.regrid import build_weights, parse_target_grid, read_source_grid

    ds = latlon_dataset(centres(-90, 90, 10.0), centres(0, 360, 10.0))
    grid, target = read_source_grid(ds, "tas"), parse_target_grid(TARGET)
    built = build_weights(grid, target, "conservative", tmp_path)
    first = build_weights(grid, target, "conservative", tmp_path)
    assert first.from_cache and first is not built
    assert build_weights(grid, target, "conservative", tmp_path) is first  # not read again
    (path,) = tmp_path.glob("weights_*.nc")
    with netCDF4.Dataset(path, "a") as nc:  # changed in place: a wrong but plausible weight
        nc["lat_S"][0] = nc["lat_S"][0] * 1.5
    with caplog.at_level(logging.WARNING, logger="hpc_workflows.regrid.weights"):
        again = build_weights(grid, target, "conservative", tmp_path)
    assert any("corrupt" in r.message and "rebuilding" in r.message for r in caplog.records)
    assert again is not first and not again.from_cache
    np.testing.assert_array_equal(again.coverage(), first.coverage())
