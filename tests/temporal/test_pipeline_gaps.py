"""Through the job, as a new user would: a day of 5-minute rates with one timestamp absent.

The 3-hour total holding the gap is missing (not 35/36 of the truth), and the run's summary
says how many windows were incomplete.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from dagster import DagsterInstance

from tests.temporal.synthetic import TARGET, day_times, window_sum, write_day

pytestmark = pytest.mark.slow


def test_absent_timestamp_is_a_missing_window_and_is_reported(tmp_path: Path) -> None:
    from hpc_workflows.definitions import fetch_and_regrid_job

    day = dt.date(2020, 2, 14)
    write_day(tmp_path / "rain_20200214.nc", day_times(day), absent=["2020-02-14T04:00"])
    config = {
        "window": {"start": "2020-02-14", "end": "2020-02-14", "step": "24h"},
        "source": {"template": str(tmp_path / "rain_{dt:%Y%m%d}.nc")},
        "regrid": {"method": "conservative", "target": TARGET,
                   "time_aggregation": {"freq": "3h", "how": "sum", "scale": 1 / 12,
                                        "units": "mm"}},
        "output": {"directory": str(tmp_path / "out"), "name": "rain3h"},
    }
    with DagsterInstance.ephemeral() as instance:
        run = fetch_and_regrid_job.execute_in_process(
            run_config={"ops": {"fetch_and_regrid": {"config": config}}}, instance=instance)
    assert run.success
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    outputs = [o for r in summary["results"] for o in r["outputs"]]
    assert [o["incomplete_windows"] for o in outputs] == [1]
    with xr.open_dataset(outputs[0]["output"]) as ds:
        assert ds.sample_count.values.tolist() == [36, 35] + [36] * 6
        assert np.isnan(ds.rainfall_rate.values[1]).all()
        np.testing.assert_allclose(ds.rainfall_rate.values[0],
                                   window_sum("2020-02-14T00:00", "2020-02-14T03:00"), rtol=1e-5)
