"""Aggregated outputs pass the CF checker: bounds, sample counts, and renamed quantities."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import xarray as xr

from hpc_workflows.preprocess import PreprocessSettings, preprocess_file
from hpc_workflows.temporal import TimeAggregation
from tests.cf.checker import high_priority_findings
from tests.temporal.synthetic import TARGET, day_times, write_day


@pytest.mark.parametrize("standard_name", [None, "thickness_of_rainfall_amount"])
def test_summed_rates_with_gaps_are_cf_clean(tmp_path: Path, standard_name) -> None:
    path = write_day(tmp_path / "in.nc", day_times(dt.date(2020, 2, 14), ending=True),
                     absent=["2020-02-14T03:00"])
    agg = TimeAggregation(freq="3h", how="sum", scale=1 / 12, units="mm", label="end",
                          input_interval="ending", standard_name=standard_name)
    settings = PreprocessSettings(target=TARGET, method="conservative",
                                  weights_dir=str(tmp_path / "w"), time_aggregation=agg)
    result = preprocess_file(path, tmp_path / "out.nc", settings, input_sha256="x")
    assert high_priority_findings(result.output) == []
    with xr.open_dataset(result.output) as ds:
        attrs = ds.rainfall_rate.attrs
        # mm is not a rate: the input's rainfall_rate name must not stay on an amount.
        assert attrs.get("standard_name") == standard_name
        assert attrs["long_name"] == "rainfall rate, sum over time"
        # 03:00 ends 02:55-03:00: the first window is short of it.
        assert ds.sample_count.values.tolist() == [35, 36, 36, 36, 36, 36, 36, 36]
        assert ds.time.attrs["bounds"] == "time_bnds"
    assert result.incomplete_windows == 1
