"""09:00-09:00 rain days through the fetch_and_regrid job, one daily file per batch step.

Each day's window needs the next day's first nine hours, which another batch step fetches and
writes: the step fetches that file again for its own use. Totals are checked against plain
numpy sums of the generating function; a missing next day makes the window missing, and a
re-run once it has arrived rebuilds the window (the ledger did not call it complete).
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

DAYS = [dt.date(2020, 2, 14), dt.date(2020, 2, 15), dt.date(2020, 2, 16)]


def _config(tmp: Path) -> dict:
    return {
        "window": {"start": "2020-02-14", "end": "2020-02-16", "step": "24h"},
        "source": {"template": str(tmp / "archive" / "rain_{dt:%Y%m%d}.nc"), "retries": 0},
        "regrid": {"method": "conservative", "target": TARGET, "weights_dir": str(tmp / "w"),
                   "time_aggregation": {"freq": "24h", "offset": "9h", "how": "sum",
                                        "scale": 1 / 12, "units": "mm"}},
        "output": {"directory": str(tmp / "out"), "name": "rain"},
        "batching": {"files_per_step": 1, "files_in_flight": 2},
    }


def _run(cfg: dict):
    from hpc_workflows.definitions import fetch_and_regrid_job

    with DagsterInstance.ephemeral() as instance:
        return fetch_and_regrid_job.execute_in_process(
            run_config={"ops": {"fetch_and_regrid": {"config": cfg}}}, instance=instance,
            raise_on_error=False)


def _write(tmp: Path, day: dt.date) -> None:
    (tmp / "archive").mkdir(exist_ok=True)
    write_day(tmp / "archive" / f"rain_{day:%Y%m%d}.nc", day_times(day))


def _rain_day(tmp: Path, day: dt.date) -> np.ndarray:
    """The one window the day's output owns: day 09:00 to the next day's 09:00."""
    with xr.open_dataset(tmp / "out" / f"rain_{day:%Y%m%d}.nc") as ds:
        assert ds.sizes["time"] == 1, ds.time.values
        assert str(ds.time_bnds.values[0][0])[:16] == f"{day:%Y-%m-%d}T09:00"
        return ds.rainfall_rate.values[0]


def _reference(day: dt.date) -> np.ndarray:
    nxt = day + dt.timedelta(days=1)
    return window_sum(f"{day:%Y-%m-%d}T09:00", f"{nxt:%Y-%m-%d}T09:00")


def test_rain_days_across_files_in_different_batches(tmp_path: Path) -> None:
    for day in DAYS:
        _write(tmp_path, day)
    run = _run(_config(tmp_path))
    assert run.success
    for day in DAYS[:2]:
        np.testing.assert_allclose(_rain_day(tmp_path, day), _reference(day), rtol=1e-5)
    # The run's last day: its window needs 17 February, outside the run: missing, not 15 hours.
    assert np.isnan(_rain_day(tmp_path, DAYS[2])).all()
    # Borrowed neighbours do not stay on scratch.
    assert not list((tmp_path / "out").rglob("*neighbours_of*"))


def test_missing_neighbour_makes_the_window_missing_until_it_arrives(tmp_path: Path) -> None:
    _write(tmp_path, DAYS[0])  # 15 February is not there yet
    cfg = _config(tmp_path)
    cfg["window"]["end"] = "2020-02-15"
    first = _run(cfg)
    assert not first.success  # 15 February's own step fails: its file is missing
    assert np.isnan(_rain_day(tmp_path, DAYS[0])).all()
    summary_rows = [r for r in (tmp_path / "out").glob(".hpc_workflows_ledger.jsonl")]
    ledger = summary_rows[0].read_text() if summary_rows else ""
    assert "rain_20200214.nc" not in ledger  # written, but not complete by the ledger rule

    _write(tmp_path, DAYS[1])
    again = _run(cfg)
    assert again.success
    np.testing.assert_allclose(_rain_day(tmp_path, DAYS[0]), _reference(DAYS[0]), rtol=1e-5)
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    statuses = {r["key"]: r["status"] for r in summary["results"]}
    assert statuses == {"20200214": "written", "20200215": "written"}
    ledger = (tmp_path / "out" / ".hpc_workflows_ledger.jsonl").read_text()
    assert "rain_20200214.nc" in ledger and "rain_20200215.nc" in ledger
