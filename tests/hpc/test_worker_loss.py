"""What the batch system says about a lost worker's job, and the event log line for a lost
local worker. Real jobs on the SLURM testbed (its scontrol, no accounting database) and a real
local worker process killed mid-step; the SLURM scancel case is in test_executor_slurm.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from hpc_workflows.hpc.worker_loss import LostWorker, describe_loss, slurm_job_fate

from .conftest import event_messages, run_test_job, wait_until

_RUNNING = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"}


def _sbatch(*args: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "-p", "debug", *args],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip().split(";")[0]


def _final_fate(job: str, timeout: float):
    return wait_until(lambda: (f := slurm_job_fate(job, wait=0)) and f.state not in _RUNNING and f,
                      timeout, f"job {job} to end")


@pytest.mark.slurm
@pytest.mark.usefixtures("testbed")
def test_failed_job_is_reported_with_its_exit_code_and_node() -> None:
    job = _sbatch("--wrap", "exit 3")
    fate = _final_fate(job, 120)
    assert fate.state == "FAILED", fate
    assert "non-zero exit" in fate.reason and "ExitCode=3:0" in fate.reason, fate.reason
    assert fate.node


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
def test_job_killed_at_its_walltime_is_reported_as_walltime() -> None:
    job = _sbatch("--time=00:01:00", "--wrap", "sleep 600")
    fate = _final_fate(job, 300)
    assert fate.state == "TIMEOUT", fate
    assert fate.reason.startswith("walltime reached"), fate.reason


@pytest.mark.slurm
@pytest.mark.usefixtures("testbed")
def test_a_job_slurm_forgot_is_said_so() -> None:
    assert slurm_job_fate("999999999", wait=0) is None
    lost = LostWorker("tls://10.0.0.5:4000", "dagster-1234abcd-3", "10.0.0.5", frozenset({"k"}))
    text = describe_loss("slurm", lost, "999999999", None)
    assert "SLURM job 999999999 on 10.0.0.5" in text and "no longer reports" in text


@pytest.mark.slow
def test_killed_local_worker_is_named_in_the_event_log(hpc_env: Path, monkeypatch) -> None:
    monkeypatch.setenv("HPCWF_TEST_FAN", "2")
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "6")
    killed: list[tuple[int, int]] = []

    def kill_a_worker_mid_step() -> None:
        marker = wait_until(lambda: sorted(hpc_env.glob("started-*")), 120, "a work step to start")[0]
        pid = json.loads(marker.read_text())["pid"]
        os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
        killed.append((int(marker.name.split("-")[1]), pid))

    killer = threading.Thread(target=kill_a_worker_mid_step, daemon=True)
    killer.start()
    ok, records, _ = run_test_job("fan_job", {"cluster": {"local": {"threads_per_worker": 1}}, "scale": 2})
    killer.join(timeout=5)
    assert killed, "no worker was killed"
    assert ok, event_messages(records)
    step, _ = killed[0]
    why = [r for r in records if r.step_key == f"work[k{step}]" and "died or was killed" in r.user_message]
    assert len(why) == 1, [r.user_message for r in records if r.user_message][-20:]
    assert "a local worker process on 127.0.0.1" in why[0].user_message
    assert "Dask runs the step again" in why[0].user_message
    assert why[0].level >= 30  # WARNING: shown on the console at INFO
