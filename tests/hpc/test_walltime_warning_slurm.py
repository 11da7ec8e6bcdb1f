"""A walltime valid but probably not meant ("5:00" = 5 minutes) is warned about in the run's
event log when the run starts on the SLURM testbed (issue 12, goal 5); the run still runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import batch_cluster, event_messages, run_test_job


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
def test_minutes_walltime_is_warned_about_at_run_start(hpc_env: Path, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_FAN", "1")
    ok, records, _ = run_test_job(
        "fan_job", {"cluster": {"slurm": batch_cluster(hpc_env, walltime="5:00")}, "scale": 1})
    text = event_messages(records)
    assert ok, text
    warnings = [r.user_message for r in records if r.level >= 30]
    assert any("execution.config.cluster.slurm.walltime '5:00' is 5 minutes to SLURM and PBS"
               in w and "write '05:00:00'" in w for w in warnings), warnings
