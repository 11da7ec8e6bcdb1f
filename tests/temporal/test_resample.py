"""Time resampling checked against direct numpy reductions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hpc_workflows.temporal import resample_time


def _rates(nsteps: int = 72, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    t = pd.date_range("2020-02-14", periods=nsteps, freq="5min")
    rr = rng.gamma(0.5, 2.0, size=(nsteps, 3, 4))
    return xr.Dataset(
        {"rr": (("time", "lat", "lon"), rr,
                {"units": "mm h-1", "standard_name": "rainfall_rate", "cell_methods": "time: mean"}),
         "land": (("lat", "lon"), np.ones((3, 4)))},
        coords={"time": t, "lat": [0.0, 1.0, 2.0], "lon": [0.0, 1.0, 2.0, 3.0]})


def test_three_hourly_accumulation_from_five_minute_rates() -> None:
    ds = _rates()
    out = resample_time(ds, "3h", "sum", scale=5 / 60, units="mm")
    ref = ds.rr.values.reshape(2, 36, 3, 4).sum(axis=1) * (5 / 60)
    np.testing.assert_allclose(out.rr.values, ref, rtol=1e-12)
    assert out.rr.attrs["units"] == "mm"
    assert out.rr.attrs["cell_methods"].startswith("time: mean time: sum (interval: 300 seconds ")
    assert out.time.attrs["bounds"] == "time_bnds"
    np.testing.assert_array_equal(
        out.time_bnds.values,
        np.array([["2020-02-14T00:00", "2020-02-14T03:00"],
                  ["2020-02-14T03:00", "2020-02-14T06:00"]], dtype="datetime64[ns]"))
    assert "land" in out and "time" not in out.land.dims


@pytest.mark.parametrize("how,func", [("mean", np.nanmean), ("min", np.nanmin),
                                      ("max", np.nanmax)])
def test_mean_min_max_skip_missing_when_allowed(how, func) -> None:
    ds = _rates()
    ds["rr"][5, 0, 0] = np.nan
    out = resample_time(ds, "1h", how, min_sample_fraction=11 / 12)
    ref = func(ds.rr.values.reshape(6, 12, 3, 4), axis=1)
    np.testing.assert_allclose(out.rr.values, ref, rtol=1e-12)
    # The default (every step) makes that hour missing in that cell only.
    strict = resample_time(ds, "1h", how)
    assert np.isnan(strict.rr.values[0, 0, 0]) and np.isfinite(strict.rr.values[0, 1, 1])


def test_sum_with_missing_step_is_missing_not_smaller() -> None:
    ds = _rates()
    ds["rr"][5, 0, 0] = np.nan
    out = resample_time(ds, "1h", "sum")
    assert np.isnan(out.rr.values[0, 0, 0])
    assert np.isfinite(out.rr.values[1:, 0, 0]).all() and np.isfinite(out.rr.values[0, 1, 1])


def test_cftime_360_day_calendar_lazy() -> None:
    import iris_sample_data

    path = Path(iris_sample_data.__file__).parent / "sample_data" / "A1B_north_america.nc"
    ds = xr.open_dataset(path, chunks={"time": 40})
    out = resample_time(ds, "10YS", "mean")
    assert out.air_temperature.chunks is not None
    ref = ds.air_temperature.values.reshape(24, 10, 37, 49).mean(axis=1)
    np.testing.assert_allclose(out.air_temperature.values, ref, rtol=1e-6)
    assert out.time_bnds.values[0, 1].year == out.time_bnds.values[0, 0].year + 10


def test_bad_input() -> None:
    ds = _rates()
    with pytest.raises(ValueError, match="how: 'median'"):
        resample_time(ds, "1h", "median")
    with pytest.raises(ValueError, match="no 'time'"):
        resample_time(ds.isel(time=0, drop=True), "1h")
    with pytest.raises(ValueError, match="freq"):
        resample_time(ds, "every-hour")
