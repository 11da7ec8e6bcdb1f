"""Fine-to-coarse aggregation checked against direct numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.regrid import parse_target_grid, read_source_grid, regrid

from .datasets import centres, latlon_dataset

BANDS = [(0.0, 0.5), (0.5, 2.0), (2.0, 10.0), (10.0, np.inf)]


def _rain(ntime: int, ny: int, nx: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.gamma(0.5, 3.0, size=(ntime, ny, nx))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, :10, :10] = np.nan  # one whole target cell without data
    return x


def test_statistics_match_numpy_block_reduction() -> None:
    # 0.1 degree -> 1 degree over 20..30N, 0..20E: each target cell is a 10x10 block.
    lat, lon = centres(20, 30, 0.1), centres(0, 20, 0.1)
    data = _rain(3, lat.size, lon.size)
    ds = latlon_dataset(lat, lon, data=data, name="rr").chunk(time=2)
    out = regrid(ds, {"kind": "regional", "lat": [20, 30], "lon": [0, 20], "resolution": 1},
                 "aggregate", statistics=["mean", "min", "max", "sum", "count", "fraction"],
                 bands=BANDS, min_valid_fraction=0.5).compute()
    blocks = data.reshape(3, 10, 10, 20, 10).transpose(0, 1, 3, 2, 4).reshape(3, 10, 20, 100)
    count = np.isfinite(blocks).sum(-1)
    enough = count >= 50
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        ref = {"rr": np.nanmean(blocks, -1), "rr_min": np.nanmin(blocks, -1),
               "rr_max": np.nanmax(blocks, -1), "rr_sum": np.nansum(blocks, -1)}
    for name, r in ref.items():
        expect = np.where(enough, r, np.nan)
        np.testing.assert_allclose(out[name].values, expect, rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(out.rr_count.values, count)
    for k, (lo, hi) in enumerate(BANDS):
        inband = ((blocks >= lo) & (blocks < hi)).sum(-1)
        with np.errstate(all="ignore"):
            expect = np.where(enough, inband / count, np.nan)
        np.testing.assert_allclose(out.rr_fraction.values[:, k], expect, rtol=1e-6)
    # The all-missing block: sum is missing (not 0), count is 0.
    assert np.isnan(out.rr_sum.values[:, 0, 0]).all() and (out.rr_count.values[:, 0, 0] == 0).all()
    assert out.rr.attrs["cell_methods"] == "area: mean"
    assert out.rr_max.attrs["cell_methods"] == "area: maximum"
    np.testing.assert_allclose(out.rr_fraction.band_lower.values, [b[0] for b in BANDS])


def test_float32_sums_are_accumulated_in_float64() -> None:
    # One 10x10 block per target cell: one large value among small ones. Summed in float32
    # the small ones are partly lost (mean 100000.27 instead of 100000.3).
    lat, lon = centres(20, 21, 0.1), centres(0, 1, 0.1)
    data = np.full((1, 10, 10), 0.3, dtype=np.float32)
    data[0, 5, 5] = 1e7
    ds = latlon_dataset(lat, lon, data=data, name="rr")
    out = regrid(ds, {"kind": "regional", "lat": [20, 21], "lon": [0, 1], "resolution": 1},
                 "aggregate", statistics=["mean", "sum"])
    exact = data.astype(np.float64).sum()
    assert out.rr.dtype == np.float32
    assert float(out.rr.values[0, 0, 0]) == float(np.float32(exact / 100))
    assert float(out.rr_sum.values[0, 0, 0]) == float(np.float32(exact))


def test_aggregate_any_grid_matches_brute_force(sample_data) -> None:
    ds = xr.open_dataset(sample_data / "toa_brightness_stereographic.nc")
    spec = {"kind": "regional", "lat": [20, 80], "lon": [-80, 40], "resolution": 5.0}
    out = regrid(ds, spec, "aggregate", statistics=["mean", "max", "count"],
                 min_valid_fraction=0.0)
    grid = read_source_grid(ds, "data")
    slat, slon = grid.centres_2d()
    slon = np.where(slon > 180, slon - 360, slon)
    t = parse_target_grid(spec)
    vals = ds["data"].values
    checked = 0
    for i in range(0, t.lat.size, 3):
        for j in range(0, t.lon.size, 4):
            (s, n), (w, e) = t.lat_bnds[i], t.lon_bnds[j]
            sel = (slat >= s) & (slat < n) & (slon >= w) & (slon < e)
            v = vals[sel]
            v = v[np.isfinite(v)]
            if not sel.any():  # no source cell at all in this target cell: unknown, not 0
                assert np.isnan(out.data_count.values[i, j])
                continue
            assert out.data_count.values[i, j] == v.size
            if v.size:
                checked += 1
                assert out["data"].values[i, j] == pytest.approx(v.mean(), rel=1e-6)
                assert out.data_max.values[i, j] == pytest.approx(v.max(), rel=1e-7)
            else:
                assert np.isnan(out["data"].values[i, j])
    assert checked >= 10


def test_aggregate_bad_statistics_and_bands() -> None:
    lat, lon = centres(0, 2, 0.5), centres(0, 2, 0.5)
    ds = latlon_dataset(lat, lon)
    with pytest.raises(ValueError, match="unknown aggregate statistics.*median"):
        regrid(ds, {"kind": "explicit", "lat": [1.0], "lon": [1.0], "lat_bnds": [[0, 2]],
                    "lon_bnds": [[0, 2]]}, "aggregate", statistics=["median"])
    with pytest.raises(ValueError, match="needs 'bands'"):
        regrid(ds, "global_1deg", "aggregate", statistics=["fraction"])
