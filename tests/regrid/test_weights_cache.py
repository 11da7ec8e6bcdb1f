"""Weights files: reuse, stale and corrupt files rebuilt, never used."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hpc_workflows.regrid import build_weights, parse_target_grid, read_source_grid, regrid

from .datasets import centres, latlon_dataset


@pytest.fixture()
def ds():
    return latlon_dataset(centres(-90, 90, 3.0), centres(0, 360, 3.0), ntime=2)


@pytest.mark.parametrize("method", ["conservative", "bilinear", "nearest"])
def test_weights_are_cached_and_reused(tmp_path: Path, ds, method: str) -> None:
    fresh = regrid(ds, "global_10deg", method, weights_dir=tmp_path)
    files = list(tmp_path.glob("weights_*.nc"))
    assert len(files) == 1 and method in files[0].name
    mtime = files[0].stat().st_mtime_ns
    grid = read_source_grid(ds, "tas")
    w = build_weights(grid, parse_target_grid("global_10deg"), method, tmp_path)
    assert w.from_cache and w.key == fresh.attrs["hpc_workflows_regrid_weights_sha256"]
    again = regrid(ds, "global_10deg", method, weights_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime  # not rewritten
    np.testing.assert_array_equal(again.tas.values, fresh.tas.values)
    # A different target grid gets its own file.
    regrid(ds, "global_20deg", method, weights_dir=tmp_path)
    assert len(list(tmp_path.glob("weights_*.nc"))) == 2


def _corrupt_truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _corrupt_flip_values(p: Path) -> None:
    import netCDF4

    with netCDF4.Dataset(p, "a") as nc:
        nc["lat_S"][0] = nc["lat_S"][0] * 1.5  # a plausible-looking but wrong weight


def _corrupt_garbage(p: Path) -> None:
    p.write_bytes(b"not a netCDF file at all")


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_flip_values, _corrupt_garbage])
def test_corrupt_weights_are_rebuilt(tmp_path: Path, ds, corrupt, caplog) -> None:
    good = regrid(ds, "global_10deg", weights_dir=tmp_path).tas.values
    (path,) = tmp_path.glob("weights_*.nc")
    corrupt(path)
    with caplog.at_level(logging.WARNING, logger="hpc_workflows.regrid.weights"):
        again = regrid(ds, "global_10deg", weights_dir=tmp_path).tas.values
    assert any("rebuilding" in r.message for r in caplog.records)
    np.testing.assert_array_equal(again, good)
    grid = read_source_grid(ds, "tas")
    assert build_weights(grid, parse_target_grid("global_10deg"), "conservative",
                         tmp_path).from_cache


def test_stale_weights_file_for_other_grids_is_rebuilt(tmp_path: Path, ds) -> None:
    good = regrid(ds, "global_10deg", weights_dir=tmp_path).tas.values
    (path,) = tmp_path.glob("weights_*.nc")
    other = tmp_path / "other"
    regrid(ds, "global_20deg", weights_dir=other)
    (other_file,) = other.glob("weights_*.nc")
    path.write_bytes(other_file.read_bytes())  # right name, wrong contents
    np.testing.assert_array_equal(regrid(ds, "global_10deg", weights_dir=tmp_path).tas.values,
                                  good)


def test_no_part_files_left_behind(tmp_path: Path, ds) -> None:
    regrid(ds, "global_10deg", weights_dir=tmp_path)
    assert not list(tmp_path.glob("*.part"))


def test_unusable_weights_dir_still_regrids(tmp_path: Path, ds, caplog) -> None:
    # A folder that cannot be created (its parent is a file) fails even for root, like a
    # read-only shared folder does for users.
    (tmp_path / "not_a_folder").write_text("x")
    with caplog.at_level(logging.WARNING, logger="hpc_workflows.regrid.weights"):
        out = regrid(ds, "global_10deg", weights_dir=tmp_path / "not_a_folder" / "weights")
    assert np.isfinite(out.tas.values).all()
    assert any("could not save weights" in r.message for r in caplog.records)


def test_concurrent_builders_leave_one_valid_file(tmp_path: Path, ds) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: regrid(ds, "global_10deg", weights_dir=tmp_path)
                                .tas.values, range(4)))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert len(list(tmp_path.glob("weights_*.nc"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    grid = read_source_grid(ds, "tas")
    assert build_weights(grid, parse_target_grid("global_10deg"), "conservative",
                         tmp_path).from_cache
