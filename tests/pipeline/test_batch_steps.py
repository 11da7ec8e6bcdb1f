"""The batch steps through Dagster: progress at INFO, per-file metadata, strict JSON summary,
and a failed file that fails its step at the end, is retried alone, and loses no other work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from tests.batching.conftest import make_sources

pytestmark = pytest.mark.slow


def _config(tmp: Path, days: int, per_step: int) -> dict:
    make_sources(tmp / "archive", days)
    return {
        "window": {"start": "2020-01-01", "end": f"2020-01-{days:02d}", "step": "24h"},
        "source": {"template": str(tmp / "archive") + "/{dt:%Y%m%d}.nc", "retries": 0},
        "regrid": {"method": "conservative", "target": {"name": "global_10deg"},
                   "weights_dir": str(tmp / "weights")},
        "output": {"directory": str(tmp / "out"), "name": "tas"},
        "batching": {"files_per_step": per_step, "files_in_flight": 2},
    }


def _run(cfg: dict):
    from hpc_workflows.definitions import fetch_and_regrid_job

    with DagsterInstance.ephemeral() as instance:
        result = fetch_and_regrid_job.execute_in_process(
            run_config={"ops": {"fetch_and_regrid": {"config": cfg}}}, instance=instance,
            raise_on_error=False)
        return result, list(instance.all_logs(result.run_id))


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_batches_log_progress_and_carry_per_file_metadata(tmp_path):
    result, records = _run(_config(tmp_path, 5, per_step=3))
    assert result.success
    steps = {r.step_key for r in records if r.step_key}
    assert {"fetch_and_regrid.process_batch[20200101_to_20200103]",
            "fetch_and_regrid.process_batch[20200104_to_20200105]"} <= steps
    info = [r.user_message for r in records if r.dagster_event is None and r.level == 20]
    assert any("3/3 files (0 already complete, 0 failed)" in m for m in info), info
    assert any("2/2 files" in m for m in info), info
    outputs = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT
               and "process_batch" in (e.step_key or "")]
    per_file = [row for e in outputs for row in e.event_specific_data.metadata["per_file"].value]
    assert sorted(row["key"] for row in per_file) == [f"202001{d:02d}" for d in range(1, 6)]
    assert all(row["status"] == "written" for row in per_file)
    summary = _strict((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["outputs_written"] == 5 and summary["batch_steps"] == 2

    again, records = _run(_config(tmp_path, 5, per_step=3))
    assert again.success
    assert not [r for r in records if r.step_key and "process_batch" in r.step_key]
    summary = _strict((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["already_complete"] == 5 and summary["outputs_skipped"] == 5


def test_failed_file_fails_its_step_at_the_end_and_only_it_is_retried(tmp_path):
    from hpc_workflows.batching import LEDGER_NAME

    cfg = _config(tmp_path, 4, per_step=4)
    # An obstacle where one output goes: writing it fails with an OSError every time, an error
    # a step retry could help with (a full disk, an NFS hiccup), so the RetryPolicy applies.
    (tmp_path / "out" / "tas_20200102.nc").mkdir(parents=True)
    result, records = _run(cfg)
    assert not result.success
    types = [(r.dagster_event.event_type_value, r.step_key) for r in records if r.dagster_event]
    batch = "fetch_and_regrid.process_batch[20200101_to_20200104]"
    assert types.count(("STEP_UP_FOR_RETRY", batch)) == 2
    failure = [r for r in records if r.dagster_event and r.dagster_event.event_type_value == "STEP_FAILURE"]
    assert [r.step_key for r in failure] == [batch]
    text = failure[0].dagster_event.event_specific_data.error.to_string()
    assert "1 of 4 file(s) failed" in text and "20200102" in text and "IsADirectoryError" in text
    progress = [r.user_message for r in records if r.dagster_event is None and "4/4 files" in r.user_message]
    # First attempt: 3 written, 1 failed; each retry found the 3 complete and redid only the 4th.
    assert progress[0].startswith("4/4 files (0 already complete, 1 failed)"), progress
    assert [p.split(",")[0] for p in progress[1:]] == ["4/4 files (3 already complete"] * 2, progress
    lines = (tmp_path / "out" / LEDGER_NAME).read_text().splitlines()
    assert sorted(json.loads(line)["name"] for line in lines) == [
        "tas_20200101.nc", "tas_20200103.nc", "tas_20200104.nc"]  # each recorded once


def test_summary_values_are_strict_json():
    """A NaN area mean (no valid data in the region) is written as null, not as bare NaN."""
    from hpc_workflows.batching.results import strict_json

    result = {"key": "20200101", "outputs": [{"area_mean_before[tas]": float("nan"),
                                               "area_mean_after[tas]": float("-inf"), "seconds": 0.5}]}
    cleaned = strict_json(result)
    assert cleaned["outputs"][0] == {"area_mean_before[tas]": None, "area_mean_after[tas]": None, "seconds": 0.5}
    json.dumps(cleaned, allow_nan=False)
