"""Time aggregation keeps preprocess_file's memory bounded by its chunks, not the file length."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hpc_workflows.preprocess import PreprocessSettings, preprocess_file
from hpc_workflows.temporal import TimeAggregation

pytestmark = pytest.mark.slow

N = 120  # 120 x 120 cells: 57.6 kB a step in float32, 16.6 MB a day of 5-minute steps


def _write(path: Path, days: int) -> int:
    times = pd.date_range("2020-02-14", periods=288 * days, freq="5min")
    lat = 50.0 + 0.01 * (np.arange(N) + 0.5)
    lon = 0.01 * (np.arange(N) + 0.5)
    ds = xr.Dataset(
        {"rainfall_rate": (("time", "lat", "lon"),
                           np.ones((times.size, N, N), np.float32), {"units": "mm h-1"})},
        coords={"time": times, "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})})
    # Written a day at a time, so the test itself never holds more than a day either.
    ds.isel(time=slice(0, 288)).to_netcdf(path, unlimited_dims=["time"], encoding={
        "rainfall_rate": {"chunksizes": (12, N, N)},
        "time": {"units": "minutes since 2020-02-14"}})
    for d in range(1, days):
        import netCDF4

        with netCDF4.Dataset(path, "a") as nc:
            start = nc.dimensions["time"].size
            nc["time"][start:start + 288] = np.arange(start, start + 288) * 5.0
            nc["rainfall_rate"][start:start + 288] = np.ones((288, N, N), np.float32)
    return times.size * N * N * 4


def _peak(tmp: Path, days: int, tag: str = "") -> tuple[int, int]:
    path = tmp / f"in_{days}{tag}.nc"
    size = _write(path, days)
    settings = PreprocessSettings(
        target={"kind": "regional", "lat": [50.0, 51.2], "lon": [0.0, 1.2], "resolution": 0.04},
        method="conservative", weights_dir=str(tmp / "w"),
        time_aggregation=TimeAggregation(freq="3h", how="sum", scale=1 / 12))
    tracemalloc.start()
    try:
        result = preprocess_file(path, tmp / f"out_{days}{tag}.nc", settings, input_sha256=str(days))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with xr.open_dataset(result.output) as out:
        np.testing.assert_allclose(out.rainfall_rate.values, 3.0, rtol=1e-6)
        assert out.sizes["time"] == 8 * days and not result.skipped
    return peak, size


def test_peak_memory_does_not_grow_with_the_number_of_days(tmp_path: Path) -> None:
    _peak(tmp_path, 1, "warm-up")  # weights, imports, caches
    one, _ = _peak(tmp_path, 1)
    four, size = _peak(tmp_path, 4)
    print(f"peak traced: 1 day {one / 1e6:.1f} MB, 4 days {four / 1e6:.1f} MB "
          f"(input {size / 1e6:.1f} MB)")
    assert four < 0.25 * size, "the 4-day input was held in memory"
    assert four < 1.5 * one + 2e6, "memory grew with the length of the file"
