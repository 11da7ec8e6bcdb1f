"""A worker does not start a step it cannot finish before its walltime; it drains and is replaced.

On SLURM: one worker at a time (scale 1), walltime 150 s, lifetime_margin 20 s (drain at
130 +/- 10 s after job start, killed at 150 s). Three steps each run 50 s and promise 55 s
(op tag hpc_workflows/expected_duration). The first worker fits two of them; the third would
start about 110 s into the job and outlive the walltime, so it must start on a fresh worker.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import pytest

from tests.hpc.conftest import batch_cluster, event_messages, run_test_job

WALLTIME = 150
STEP_SECONDS = 50


def _sacct_end(job_id: str) -> float | None:
    """The job's end (epoch seconds) from SLURM accounting, None when sacct has no record."""
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "End"], capture_output=True,
                         text=True, timeout=30).stdout.strip()
    try:
        return datetime.fromisoformat(out.splitlines()[0]).timestamp()
    except (ValueError, IndexError):
        return None


@pytest.mark.slurm
@pytest.mark.slow
def test_no_step_starts_that_cannot_finish_before_walltime(testbed, hpc_env, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_FAN", "3")
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", str(STEP_SECONDS))
    cluster = batch_cluster(hpc_env, walltime="00:02:30", lifetime_margin="00:00:20")
    ok, records, _ = run_test_job("timed_job", {"cluster": {"slurm": cluster}, "scale": 1})
    assert ok, event_messages(records)
    started = [json.loads(p.read_text()) for p in hpc_env.glob("timed-started-*")]
    # Every step started once: none was started, killed at the walltime and run again.
    assert sorted(s["i"] for s in started) == [0, 1, 2], started
    for s in started:
        assert s["job_start"] > 0, s
        finish_by = s["job_start"] + WALLTIME
        assert s["start"] + STEP_SECONDS <= finish_by, (
            f"step {s['i']} started {s['start'] - s['job_start']:.0f} s into job {s['slurm_job_id']}, "
            f"{finish_by - s['start']:.0f} s before its walltime: too late for a {STEP_SECONDS} s step")
    results = json.loads((hpc_env / "out.json").read_text())["results"]
    for r in results:
        end = _sacct_end(r["slurm_job_id"])
        if end is not None:  # the job's real end, from accounting (whole seconds)
            assert r["end"] <= end + 1, (r, end)
    # One or two fit on the first worker (its drain time is staggered); the rest ran on a
    # replacement job.
    assert len({r["slurm_job_id"] for r in results}) >= 2, results


def test_duration_tag_longer_than_the_walltime_fails_before_any_job(hpc_env):
    cluster = batch_cluster(hpc_env, walltime="00:02:30")
    ok, records, _ = run_test_job("hour_long_job", {"cluster": {"slurm": cluster}, "scale": 1})
    assert not ok
    messages = event_messages(records)
    assert 'step "hour_long": expected to take 3600 s (op tag hpc_workflows/expected_duration)' in messages
    assert "Raise the cluster's walltime" in messages
    assert "Starting slurm Dask cluster" not in messages  # nothing was submitted


def test_expected_duration_from_this_run_and_earlier_runs(hpc_env, monkeypatch):
    """Estimates from history: the op's steps in an earlier run of the job, with the margin."""
    import dagster as dg

    from hpc_workflows.hpc.step_budget import HISTORY_MARGIN, StepBudget, parse_expected_duration

    monkeypatch.setenv("HPCWF_TEST_FAN", "2")
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "1.5")
    ok, records, run_id = run_test_job("fan_job", {"cluster": {"local": {}}, "scale": 1})
    assert ok
    with dg.DagsterInstance.get() as instance:
        budget = StepBudget(instance, "fan_job", "a-later-run")
        seconds, source = budget.expected("work[k5]", {})
        assert "earlier runs" in source
        assert 1.5 * HISTORY_MARGIN <= seconds < 10 * HISTORY_MARGIN
        assert budget.expected("never_ran", {}) is None
        # This run's own successes come first.
        budget.record([r.dagster_event for r in records if r.dagster_event])
        seconds_now, source_now = budget.expected("work[k0]", {})
        assert "this run" in source_now and seconds_now >= 1.5 * HISTORY_MARGIN
    assert parse_expected_duration("90") == 90 and parse_expected_duration("00:01:30") == 90
    with pytest.raises(ValueError, match="hpc_workflows/expected_duration"):
        parse_expected_duration("soon")


@pytest.mark.slurm
@pytest.mark.slow
def test_idle_worker_too_short_for_the_waiting_step_is_replaced_at_once(testbed, hpc_env, monkeypatch):
    """The second of two chained 40 s steps (tagged 60 s) is ready when the only worker has
    less time left than that: the worker, idle, is retired then, not at its drain time.

    walltime 104 s, lifetime_margin 6 s: drain at 98 +/- 3 s into the job. The first step ends
    40 s or more into the job, leaving at most 101 - 40 - 2 < 60 s; without the replacement the
    worker would idle until 95-101 s.
    """
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "40")
    cluster = batch_cluster(hpc_env, walltime="00:01:44", lifetime_margin="00:00:06")
    ok, records, _ = run_test_job("timed_chain_job", {"cluster": {"slurm": cluster}, "scale": 1})
    assert ok, event_messages(records)
    first, second = json.loads((hpc_env / "out.json").read_text())["results"]
    assert first["slurm_job_id"] != second["slurm_job_id"], (first, second)
    for step in (first, second):
        assert step["start"] + 40 <= step["job_start"] + 104, step
    end = _sacct_end(first["slurm_job_id"])
    assert end is not None, "sacct has no end for the first worker job"
    # Its drain time is 98 +/- 3 s into the job: ending before 95 s means it was replaced.
    assert end - first["job_start"] < 95, (
        f"the first worker job ended {end - first['job_start']:.0f} s into the job, "
        f"{end - first['end']:.0f} s after its last step: it idled until its drain time")
