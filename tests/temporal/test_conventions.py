"""Interval conventions: what an input value stands for, how windows are labelled, offsets."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hpc_workflows.temporal import resample_time
from tests.temporal.synthetic import dataset, day_times, window_sum

DAY = dt.date(2020, 2, 14)


def test_value_ending_at_2400_belongs_to_the_day_it_ends() -> None:
    """A file of 00:05..24:00 accumulations: the 24:00 value is in 21:00-24:00, not dropped."""
    ds = dataset(day_times(DAY, ending=True))
    out = resample_time(ds, "3h", "sum", scale=1 / 12, input_interval="ending")
    assert out.sizes["time"] == 8
    np.testing.assert_array_equal(out.sample_count.values, [36] * 8)
    assert out.attrs["hpc_workflows_time_incomplete_windows"] == 0
    np.testing.assert_allclose(out.rainfall_rate.values[7],
                               window_sum("2020-02-14T21:00", "2020-02-15T00:00", ending=True),
                               rtol=1e-6)
    np.testing.assert_array_equal(out.time_bnds.values[7], np.array(
        ["2020-02-14T21:00", "2020-02-15T00:00"], dtype="datetime64[ns]"))
    assert "inputs over the 300 s ending at their time" in out.rainfall_rate.attrs["cell_methods"]


def test_instantaneous_2400_value_opens_an_incomplete_window() -> None:
    """The same file read as instantaneous: 00:05..23:55 miss 00:00, 24:00 starts a new day."""
    ds = dataset(day_times(DAY, ending=True))
    out = resample_time(ds, "3h", "sum", scale=1 / 12)
    assert out.sizes["time"] == 9
    assert out.sample_count.values.tolist() == [35] + [36] * 7 + [1]
    assert np.isnan(out.rainfall_rate.values[[0, 8]]).all()


def test_starting_values_and_end_labels() -> None:
    ds = dataset(day_times(DAY))
    out = resample_time(ds, "3h", "sum", scale=1 / 12, input_interval="starting", label="end")
    np.testing.assert_array_equal(out.time.values[:2], np.array(
        ["2020-02-14T03:00", "2020-02-14T06:00"], dtype="datetime64[ns]"))
    np.testing.assert_array_equal(out.time_bnds.values[0], np.array(
        ["2020-02-14T00:00", "2020-02-14T03:00"], dtype="datetime64[ns]"))
    np.testing.assert_allclose(out.rainfall_rate.values[0],
                               window_sum("2020-02-14T00:00", "2020-02-14T03:00"), rtol=1e-6)
    assert "labelled at end" in out.rainfall_rate.attrs["cell_methods"]


def test_offset_windows_run_from_0900() -> None:
    two_days = day_times(DAY).append(day_times(DAY + dt.timedelta(days=1)))
    out = resample_time(dataset(two_days), "1D", "sum", scale=1 / 12, offset="9h")
    np.testing.assert_array_equal(out.time_bnds.values, np.array(
        [["2020-02-13T09:00", "2020-02-14T09:00"], ["2020-02-14T09:00", "2020-02-15T09:00"],
         ["2020-02-15T09:00", "2020-02-16T09:00"]], dtype="datetime64[ns]"))
    assert out.sample_count.values.tolist() == [108, 288, 180]
    np.testing.assert_allclose(out.rainfall_rate.values[1],
                               window_sum("2020-02-14T09:00", "2020-02-15T09:00"), rtol=1e-6)
    assert np.isnan(out.rainfall_rate.values[[0, 2]]).all()


@pytest.mark.parametrize("day", ["2020-02-14", "2020-02-15"])
def test_multi_day_windows_are_the_same_in_every_file(day) -> None:
    """Each file is aggregated alone: 2-day windows must not start at each file's first day."""
    times = pd.date_range(day, periods=288, freq="5min")
    out = resample_time(dataset(times), "2D", "sum", min_sample_fraction=0)
    np.testing.assert_array_equal(out.time_bnds.values, np.array(
        [["2020-02-14", "2020-02-16"]], dtype="datetime64[ns]"))  # day 18306 since 1970: even


def test_monthly_windows_expect_each_months_length() -> None:
    times = pd.date_range("2020-01-01", "2020-03-31", freq="1D")
    out = resample_time(dataset(times), "1MS", "mean")
    assert out.expected_sample_count.values.tolist() == [31, 29, 31]
    assert out.attrs["hpc_workflows_time_incomplete_windows"] == 0


@pytest.mark.parametrize("field,value,fix", [
    ("input_interval", "centred", "instant, ending, starting"),
    ("label", "middle", "start, end"),
    ("partial_sum", "guess", "scale_up, as_is"),
    ("min_sample_fraction", 1.5, "between 0 and 1"),
    ("offset", "nine hours", "duration"),
    ("input_step", "7min", "does not divide freq"),
])
def test_config_names_the_field_and_the_fix(field, value, fix) -> None:
    from pydantic import ValidationError

    from hpc_workflows.config import TimeAggregationConfig, format_validation_error

    with pytest.raises(ValidationError) as info:
        TimeAggregationConfig(freq="3h", how="sum", **{field: value})
    text = format_validation_error(info.value, root="regrid.time_aggregation")
    assert len(text.splitlines()) == 1 and fix in text, text
    assert f"regrid.time_aggregation.{field}: " in text or \
        f"regrid.time_aggregation: {field}: " in text, text
    ok = TimeAggregationConfig(freq="1D", how="sum", offset="9h", input_interval="ending",
                               label="end", min_sample_fraction=0.9, partial_sum="as_is")
    assert ok.rules().offset == "9h" and ok.rules().partial_sum == "as_is"


def test_360_day_calendar_with_a_period_and_an_offset() -> None:
    from hpc_workflows.temporal import TimeAggregation, plan_windows
    from hpc_workflows.temporal.aggregate import aggregate_windows
    from hpc_workflows.temporal.windows import interval_starts

    t = xr.date_range("2000-01-01", periods=2 * 288, freq="5min", calendar="360_day",
                      use_cftime=True)
    ds = xr.Dataset({"v": (("time", "y"), np.ones((t.size, 2)))}, coords={"time": t})
    agg = TimeAggregation(freq="1D", how="sum", offset="9h", input_interval="ending")
    windows = plan_windows(interval_starts(ds.time.values, 300.0, "ending"), agg, 300.0,
                           period=(dt.datetime(2000, 1, 1), dt.datetime(2000, 1, 3)))
    out = aggregate_windows(ds, agg, windows=windows, step=300.0)
    assert [str(s) for s in out.time.values] == ["2000-01-01 09:00:00", "2000-01-02 09:00:00"]
    # 01-02 09:00 to 01-02 24:00 of values ending at their time: 180 steps, the last at 24:00
    # absent (the file ends at 23:55), so 179.
    assert out.sample_count.values.tolist() == [288, 179]
    np.testing.assert_array_equal(out.v.values[:, 0], [288.0, np.nan])
