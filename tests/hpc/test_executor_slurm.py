"""The HPC executor on the real SLURM testbed: every step runs inside a batch job."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import (
    JOBS_FILE,
    REPO,
    batch_cluster,
    event_messages,
    queue_jobs,
    run_test_job,
    step_events,
    wait_until,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("testbed")]


def test_fan_out_runs_in_slurm_jobs_with_logs_and_nothing_left(hpc_env: Path, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_FAN", "4")
    ok, records, run_id = run_test_job(
        "fan_job", {"cluster": {"slurm": batch_cluster(hpc_env)}, "scale": 2}
    )
    assert ok, event_messages(records)
    results = json.loads((hpc_env / "out.json").read_text())["results"]
    assert sorted(r["i"] for r in results) == [0, 1, 2, 3]
    job_ids = {r["slurm_job_id"] for r in results}
    assert None not in job_ids, "a step ran outside a SLURM job"
    # Worker logs land in log_directory, named after the run.
    logs = list((hpc_env / "worker_logs").iterdir())
    assert any(p.name.startswith(f"dagster-{run_id[:8]}") for p in logs), logs
    # Point 7: the cluster is closed and no worker job is left in the queue.
    wait_until(lambda: not queue_jobs(f"dagster-{run_id[:8]}"), 30, "worker jobs to leave the queue")
    # TLS is on by default for batch clusters: the worker job script got TLS arguments.
    assert any("tls://" in p.read_text() or "--tls-cert" in p.read_text() for p in logs if p.suffix == ".err"), (
        "no TLS address in the worker logs"
    )
    # A normal end: workers retire and their jobs end by themselves, nothing in their logs
    # but INFO lines (no shutdown tracebacks, no sizeof warning per step result).
    for p in logs:
        text = p.read_text()
        for noise in ("Traceback", "CommClosedError", "StreamClosedError", "distributed.sizeof"):
            assert noise not in text, f"{noise!r} in worker log {p.name}:\n{text[-3000:]}"


def test_retry_policy_honoured_and_downstream_of_failure_skipped(hpc_env: Path):
    ok, records, _ = run_test_job(
        "retry_skip_job", {"cluster": {"slurm": batch_cluster(hpc_env)}, "scale": 2}
    )
    assert not ok
    assert "flaky" in step_events(records, "STEP_UP_FOR_RETRY")
    assert {"flaky", "after_flaky"} <= set(step_events(records, "STEP_SUCCESS"))
    assert step_events(records, "STEP_FAILURE") == ["broken"]
    # Dagster's own wording for a step skipped because an upstream step failed ("abandoned").
    assert any(
        "Dependencies for step after_broken failed: ['broken']. Not executing." in r.user_message
        for r in records
    )
    assert "after_broken" not in step_events(records, "STEP_START")


def test_step_asking_for_a_resource_no_worker_has_fails_clearly(hpc_env: Path):
    ok, records, run_id = run_test_job(
        "gpu_job", {"cluster": {"slurm": batch_cluster(hpc_env)}, "adapt": {"minimum": 0, "maximum": 1}}
    )
    assert not ok
    assert step_events(records, "STEP_FAILURE") == ["needs_gpu"]
    text = event_messages(records)
    assert "GPU" in text and "could never start" in text and "resources" in text
    assert not queue_jobs(f"dagster-{run_id[:8]}")


def test_rejected_queue_fails_the_run_with_the_batch_systems_message(hpc_env: Path):
    ok, records, _ = run_test_job(
        "fan_job",
        {"cluster": {"slurm": batch_cluster(hpc_env, queue="no_such_queue")}, "scale": 1},
    )
    assert not ok
    text = event_messages(records)
    assert "submitting a slurm worker job failed" in text
    assert "invalid partition" in text.lower()


def test_worker_that_never_starts_fails_after_the_deadline(hpc_env: Path):
    # Accepted by sbatch but held for an hour: nothing can ever connect in time.
    cluster = batch_cluster(hpc_env, job_extra_directives=["--begin=now+3600"])
    ok, records, run_id = run_test_job(
        "fan_job", {"cluster": {"slurm": cluster}, "scale": 1, "worker_start_timeout": 4}
    )
    assert not ok
    assert "no Dask worker connected within worker_start_timeout=4 s" in event_messages(records)
    wait_until(lambda: not queue_jobs(f"dagster-{run_id[:8]}"), 30, "the held job to be cancelled")


def test_cancelled_worker_job_its_steps_run_elsewhere(hpc_env: Path, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_FAN", "4")
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "6")
    cancelled: list[tuple[int, str]] = []

    def cancel_a_worker_mid_step() -> None:
        marker = wait_until(lambda: sorted(hpc_env.glob("started-*")), 180, "a work step to start")[0]
        where = json.loads(marker.read_text())
        node = subprocess.run(["squeue", "-h", "-j", where["slurm_job_id"], "-o", "%N"],
                              capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        subprocess.run(["scancel", where["slurm_job_id"]], check=True, timeout=30)
        cancelled.append((int(marker.name.split("-")[1]), where["slurm_job_id"], node))

    killer = threading.Thread(target=cancel_a_worker_mid_step, daemon=True)
    killer.start()
    ok, records, run_id = run_test_job(
        "fan_job", {"cluster": {"slurm": batch_cluster(hpc_env)}, "scale": 2}
    )
    killer.join(timeout=5)
    assert cancelled, "no worker job was cancelled"
    assert ok, event_messages(records)
    results = {r["i"]: r for r in json.loads((hpc_env / "out.json").read_text())["results"]}
    assert sorted(results) == [0, 1, 2, 3]
    step, killed_job, node = cancelled[0]
    assert results[step]["slurm_job_id"] != killed_job, "the killed step's result came from the killed job"
    # The event log says why the step ran again: the job, its node, the scheduler's reason.
    why = [r.user_message for r in records if r.step_key == f"work[k{step}]" and "which was lost" in r.user_message]
    assert len(why) == 1, event_messages(records)[-3000:]
    assert f"SLURM job {killed_job} on node {node}, which was lost: cancelled by scancel" in why[0], why[0]
    assert "JobState=CANCELLED" in why[0], why[0]
    assert "runs the step again" in why[0], why[0]
    wait_until(lambda: not queue_jobs(f"dagster-{run_id[:8]}"), 30, "worker jobs to leave the queue")


def test_workers_retire_before_walltime_and_are_replaced(hpc_env: Path, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_FAN", "6")
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "5")
    # 1-minute walltime, retire 40 s early: a worker takes new steps for 20 +- 2 s (stagger)
    # after its job started, so 6 x 5 s of steps on one worker slot need a replacement worker
    # (with 4 x 5 s a fast-starting worker could just finish them all: seen once in CI); a
    # worker killed by the walltime mid-step would fail or restart steps instead.
    cluster = batch_cluster(hpc_env, walltime="00:01:00", lifetime_margin="00:40")
    ok, records, run_id = run_test_job("fan_job", {"cluster": {"slurm": cluster}, "scale": 1})
    assert ok, event_messages(records)
    results = json.loads((hpc_env / "out.json").read_text())["results"]
    job_ids = {r["slurm_job_id"] for r in results}
    assert len(job_ids) >= 2, f"expected replacement workers, all steps ran in {job_ids}"
    assert not step_events(records, "STEP_FAILURE")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_leaves_no_worker_job(hpc_env: Path, tmp_path: Path, sig):
    config = tmp_path / "run.yaml"
    # DEBUG console: the cluster's name is in an engine event, which INFO (the default) hides.
    config.write_text(
        json.dumps({"execution": {"config": {"cluster": {"slurm": batch_cluster(hpc_env)}, "scale": 2}},
                    "loggers": {"console": {"config": {"log_level": "DEBUG"}}}})
    )
    env = dict(os.environ, HPCWF_TEST_FAN="4", HPCWF_TEST_STEP_SECONDS="60")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-f", str(JOBS_FILE),
         "-j", "fan_job", "-c", str(config)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # The run names its cluster (and so its worker jobs) in its own output: only those
        # jobs count, whatever else runs on the cluster.
        started = wait_until(
            lambda: next((m for line in list(lines)
                          if (m := re.search(r"Dask cluster (dagster-[0-9a-f]+)", line))), None),
            120, "the run to start its cluster",
        )
        run_prefix = started.group(1)
        wait_until(lambda: [r for r in queue_jobs(run_prefix) if r[2] == "RUNNING"], 120,
                   "the run's worker jobs to run")
        proc.send_signal(sig)  # SIGTERM: what scancel/qdel send a coordinator job
        proc.wait(timeout=120)
        reader.join(timeout=30)
        out = "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    # The executor's own teardown ran (workers would also leave on losing the scheduler, but
    # jobs still queued would not).
    assert "Interrupted: cancelling steps and worker jobs" in out, out[-3000:]
    wait_until(lambda: not queue_jobs(run_prefix), 30, "every worker job of the run to be cancelled")
