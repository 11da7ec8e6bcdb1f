"""Expected samples: absent time steps at the start, middle and end of windows are counted."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from hpc_workflows.temporal import resample_time
from tests.temporal.synthetic import dataset, day_times, rate

DAY = dt.date(2020, 2, 14)
# 3-hour windows: 03:00 is the first step of window 1, 10:30 the middle of window 3,
# 17:55 the last of window 5.
ABSENT = ["2020-02-14T03:00", "2020-02-14T10:30", "2020-02-14T17:55"]
GAPPY = [1, 3, 5]


def _day(absent=ABSENT, chunked: bool = True):
    times = day_times(DAY)
    kept = times[~times.isin(pd.DatetimeIndex(absent))]
    ds = dataset(kept)
    return (ds.chunk(time=24) if chunked else ds), kept


def _per_window(kept: pd.DatetimeIndex):
    """Rates of the kept steps grouped by 3-hour window (plain numpy)."""
    values = rate(kept)
    window = (kept.hour // 3).to_numpy()
    return [values[window == w] for w in range(8)]


def test_sum_with_an_absent_step_is_missing_and_counted() -> None:
    ds, kept = _day()
    out = resample_time(ds, "3h", "sum", scale=1 / 12, units="mm")
    groups = _per_window(kept)
    assert out.rainfall_rate.chunks is not None  # still lazy: nothing read yet
    values = out.rainfall_rate.values
    for w in range(8):
        if w in GAPPY:
            assert np.isnan(values[w]).all(), f"window {w} summed {len(groups[w])} of 36 steps"
        else:
            np.testing.assert_allclose(values[w], groups[w].sum(axis=0) / 12, rtol=1e-6)
    np.testing.assert_array_equal(out.sample_count.values, [36, 35, 36, 35, 36, 35, 36, 36])
    np.testing.assert_array_equal(out.expected_sample_count.values, [36] * 8)
    assert out.attrs["hpc_workflows_time_incomplete_windows"] == 3
    assert out.rainfall_rate.attrs["ancillary_variables"] == "sample_count expected_sample_count"
    assert out.sample_count.attrs["standard_name"] == "number_of_observations"


@pytest.mark.parametrize("rule", ["scale_up", "as_is"])
def test_allowed_partial_sum_follows_the_configured_rule(rule: str) -> None:
    ds, kept = _day()
    out = resample_time(ds, "3h", "sum", scale=1 / 12, min_sample_fraction=35 / 36,
                        partial_sum=rule)
    groups = _per_window(kept)
    for w in range(8):
        total = groups[w].sum(axis=0) / 12
        if w in GAPPY and rule == "scale_up":
            total = total * 36 / 35
        np.testing.assert_allclose(out.rainfall_rate.values[w], total, rtol=1e-6)
    assert ("partial sums scaled" in out.rainfall_rate.attrs["cell_methods"]) == (rule == "scale_up")


def test_fraction_below_the_minimum_is_still_missing() -> None:
    absent = ABSENT + ["2020-02-14T03:05"]  # window 1 now has 34 of 36
    ds, kept = _day(absent)
    out = resample_time(ds, "3h", "sum", scale=1 / 12, min_sample_fraction=35 / 36)
    assert np.isnan(out.rainfall_rate.values[1]).all()
    assert np.isfinite(out.rainfall_rate.values[3]).all()


@pytest.mark.parametrize("how,func", [("mean", np.mean), ("min", np.min), ("max", np.max)])
def test_mean_min_max_use_the_minimum_fraction(how, func) -> None:
    ds, kept = _day()
    strict = resample_time(ds, "3h", how)
    groups = _per_window(kept)
    for w in range(8):
        if w in GAPPY:
            assert np.isnan(strict.rainfall_rate.values[w]).all()
        else:
            np.testing.assert_allclose(strict.rainfall_rate.values[w], func(groups[w], axis=0),
                                       rtol=1e-6)
    loose = resample_time(ds, "3h", how, min_sample_fraction=0.9)
    for w in GAPPY:
        np.testing.assert_allclose(loose.rainfall_rate.values[w], func(groups[w], axis=0),
                                   rtol=1e-6)


def test_a_missing_value_counts_per_cell() -> None:
    ds, kept = _day(absent=[], chunked=False)
    ds["rainfall_rate"][40, 2, 1] = np.nan  # 03:20, window 1, one cell
    out = resample_time(ds, "3h", "sum", scale=1 / 12)
    assert np.isnan(out.rainfall_rate.values[1, 2, 1])
    assert np.isfinite(out.rainfall_rate.values[1]).sum() == 15
    assert out.sample_count.values[1] == 36  # the time step is there; the cell is not valid
    scaled = resample_time(ds, "3h", "sum", scale=1 / 12, min_sample_fraction=0.9)
    ref = np.nansum(rate(kept[36:72])[:, 2, 1] * np.where(np.arange(36) == 4, np.nan, 1))
    np.testing.assert_allclose(scaled.rainfall_rate.values[1, 2, 1], ref / 12 * 36 / 35, rtol=1e-6)


def test_windows_without_any_step_in_the_middle_are_missing() -> None:
    times = day_times(DAY)
    kept = times[(times.hour < 6) | (times.hour >= 9)]  # 06:00-08:55 absent: window 2
    out = resample_time(dataset(kept), "3h", "sum")
    assert out.sizes["time"] == 8 and out.sample_count.values[2] == 0
    assert np.isnan(out.rainfall_rate.values[2]).all()
    assert out.attrs["hpc_workflows_time_incomplete_windows"] == 1


def test_irregular_or_single_step_needs_input_step() -> None:
    times = pd.DatetimeIndex(["2020-02-14T00:00", "2020-02-14T00:05", "2020-02-14T00:12"])
    with pytest.raises(ValueError, match="input_step"):
        resample_time(dataset(times), "1h", "sum")
    with pytest.raises(ValueError, match="input_step"):
        resample_time(dataset(times[:1]), "1h", "sum")
    one = resample_time(dataset(times[:1]), "1h", "sum", input_step="5min",
                        min_sample_fraction=0)
    assert one.sample_count.values.tolist() == [1] and one.expected_sample_count.values.tolist() == [12]
    minutely = pd.date_range("2020-02-14", periods=4, freq="1min")
    with pytest.raises(ValueError, match="holds 4 time steps but 1 fit"):
        resample_time(dataset(minutely), "5min", "sum", input_step="5min")
