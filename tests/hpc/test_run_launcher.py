"""Runs launched through the instance (as the UI, schedules and sensors do) become batch jobs.

Real path: ``dagster job launch -f executor_jobs.py`` on an instance whose dagster.yaml sets
``BatchRunLauncher``; run monitoring runs in a real ``dagster-daemon``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import JOBS_FILE, batch_cluster, queue_jobs, wait_until

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("testbed")]

BIN = Path(sys.executable).parent
JOB_ID_TAG = "hpc_workflows/batch_job_id"


def _instance_with_launcher(home: Path, logs: Path, scheduler: str = "slurm") -> None:
    cfg = yaml.safe_load((home / "dagster.yaml").read_text())
    cfg["run_launcher"] = {
        "module": "hpc_workflows.hpc.launcher",
        "class": "BatchRunLauncher",
        "config": {"scheduler": scheduler, "queue": "debug", "walltime": "00:10:00",
                   "memory": "1GiB", "log_directory": str(logs)},
    }
    cfg["run_monitoring"] = {"enabled": True, "poll_interval_seconds": 5}
    (home / "dagster.yaml").write_text(yaml.safe_dump(cfg))


def _launch(tmp: Path, tags: dict[str, str] | None = None, job: str = "fan_job") -> str:
    run_id = str(uuid.uuid4())
    run_config = {"execution": {"config": {"cluster": {"slurm": batch_cluster(tmp)}, "scale": 2}}}
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump(run_config))
    out = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-f", str(JOBS_FILE), "-j", job, "-c", str(cfg),
         "--run-id", run_id, "--tags", json.dumps(tags or {})],
        timeout=180, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return run_id


def _run(run_id: str):
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return instance.get_run_by_id(run_id)


def _messages(run_id: str) -> str:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return "\n".join(r.message or "" for r in instance.all_logs(run_id))


def _coordinator_running(run_id: str) -> str | None:
    run = _run(run_id)
    job_id = run.tags.get(JOB_ID_TAG) if run else None
    if job_id and any(j[0] == job_id and j[2] == "RUNNING" for j in queue_jobs(f"dagster-run-{run_id[:8]}")):
        return job_id
    return None


def _started_steps(markers: Path) -> list[Path]:
    return list(markers.glob("started-*"))


def run_daemon(folder: Path, *location: str) -> Iterator[subprocess.Popen]:
    """A real ``dagster-daemon run <location>`` (log in ``folder``) until the caller resumes it."""
    proc = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", *location],
        stdout=open(folder / "daemon.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def daemon(launcher_env: Path) -> Iterator[subprocess.Popen]:
    """A real dagster-daemon (run monitoring) on the test's instance."""
    yield from run_daemon(launcher_env, "-f", str(JOBS_FILE))


@pytest.fixture
def launcher_env(hpc_env: Path, dagster_home: Path) -> Path:
    import dagster as dg

    _instance_with_launcher(dagster_home, hpc_env / "run_jobs")
    with dg.DagsterInstance.get() as instance:  # creates the SQLite storage once: the daemon
        instance.get_runs(limit=1)  # and `dagster job launch` racing to create it collide
    return hpc_env


def test_launched_run_runs_its_coordinator_as_a_slurm_job(launcher_env: Path, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "2")
    run_id = _launch(launcher_env, tags={"hpc_workflows/walltime": "00:07:00"})
    job_id = wait_until(lambda: _coordinator_running(run_id), 300, "the coordinator job to run")
    # The per-run tag overrode the instance's walltime (10 min) on the real job.
    limit = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%l"], capture_output=True, text=True).stdout
    assert limit.strip() in ("7:00", "00:07:00"), limit
    wait_until(lambda: _run(run_id).is_finished, 300, "the run to finish")
    assert _run(run_id).status.value == "SUCCESS", _messages(run_id)
    out = json.loads((launcher_env / "out.json").read_text())
    assert out["run_id"] == run_id
    assert f"Submitted the run's coordinator as slurm job {job_id}" in _messages(run_id)
    # The job's stdout/stderr land in log_directory, named after the run and the job.
    assert (launcher_env / "run_jobs" / f"dagster-run-{run_id[:8]}.{job_id}.err").exists()
    # The script holds no instance config: only the path of DAGSTER_HOME.
    script = (launcher_env / "run_jobs" / f"dagster-run-{run_id[:8]}.sh").read_text()
    assert "run_launcher" not in script and "storage" not in script
    assert oct((launcher_env / "run_jobs").stat().st_mode & 0o777) == "0o700"
    wait_until(lambda: not queue_jobs(f"dagster-run-{run_id[:8]}"), 60, "the coordinator job to leave")


def launch_refused(tmp: Path, tags: dict[str, str]) -> tuple[str, str]:
    """Launch ``fan_job`` with ``tags``, which the launcher must refuse: (its output, run id)."""
    run_id = str(uuid.uuid4())
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump({"execution": {"config": {"cluster": {"slurm": batch_cluster(tmp)},
                                                            "scale": 1}}}))
    out = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-f", str(JOBS_FILE), "-j", "fan_job", "-c", str(cfg),
         "--run-id", run_id, "--tags", json.dumps(tags)],
        timeout=120, capture_output=True, text=True,
    )
    assert out.returncode != 0, "the launch was not refused"
    return out.stderr + out.stdout, run_id


def test_bad_override_tag_is_refused_before_submission(launcher_env: Path):
    said, run_id = launch_refused(launcher_env, {"hpc_workflows/memory": "8"})
    assert "run tag hpc_workflows/memory" in said and "has no unit" in said
    assert _run(run_id).status.value == "FAILURE"
    assert not queue_jobs(f"dagster-run-{run_id[:8]}")


def test_scancel_of_coordinator_fails_the_run_with_reason_and_cancels_workers(
    launcher_env: Path, daemon, monkeypatch
):
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "120")
    run_id = _launch(launcher_env)
    job_id = wait_until(lambda: _coordinator_running(run_id), 300, "the coordinator job to run")
    wait_until(lambda: _started_steps(launcher_env), 180, "a step to start on a worker")
    assert queue_jobs(f"dagster-{run_id[:8]}"), "no worker job while a step runs"
    subprocess.run(["scancel", job_id], check=True)
    wait_until(lambda: _run(run_id).is_finished, 60, "the run to be marked finished")
    assert _run(run_id).status.value == "FAILURE"
    text = _messages(run_id)
    assert f"batch job {job_id}: CANCELLED" in text, text
    wait_until(lambda: not queue_jobs(f"dagster-{run_id[:8]}"), 60, "the worker jobs to go")


def test_killed_coordinator_is_failed_by_run_monitoring_with_scheduler_reason(
    launcher_env: Path, daemon, monkeypatch
):
    # SIGKILL: nothing of the coordinator reports (like a node failure or an OOM kill).
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "120")
    run_id = _launch(launcher_env)
    job_id = wait_until(lambda: _coordinator_running(run_id), 300, "the coordinator job to run")
    wait_until(lambda: _run(run_id).status.value == "STARTED", 120, "the run to start")
    # SIGKILL to every process of the job at once (scancel --signal=KILL reaches only the
    # script's main process, and the job's cleanup then SIGTERMs the rest, which do report).
    pids = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, check=True).stdout
    for pid in [int(line.split()[0]) for line in pids.splitlines()[1:] if line.split()]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: _run(run_id).is_finished, 60, "run monitoring to mark the run finished")
    assert _run(run_id).status.value == "FAILURE"
    text = _messages(run_id)
    assert f"batch job {job_id}:" in text and "Detected run worker status FAILED" in text, text
    # Worker jobs lose their scheduler and end (death_timeout); none is left behind for good.
    wait_until(lambda: not queue_jobs(f"dagster-{run_id[:8]}"), 180, "the orphaned worker jobs to end")


def test_terminate_cancels_the_coordinator_job_and_its_workers(launcher_env: Path, monkeypatch):
    import dagster as dg

    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "120")
    run_id = _launch(launcher_env)
    job_id = wait_until(lambda: _coordinator_running(run_id), 300, "the coordinator job to run")
    wait_until(lambda: _started_steps(launcher_env), 180, "a step to start on a worker")
    with dg.DagsterInstance.get() as instance:  # what the UI's Terminate button calls
        assert instance.run_launcher.terminate(run_id)
        wait_until(lambda: not queue_jobs(f"dagster-run-{run_id[:8]}"), 60, "the coordinator job to go")
        wait_until(lambda: _run(run_id).status.value == "CANCELED", 60, "the run to be marked canceled")
    wait_until(lambda: not queue_jobs(f"dagster-{run_id[:8]}"), 60, "the worker jobs to go")
    assert job_id in _messages(run_id)


@pytest.mark.pbs
def test_pbs_launcher_submits_the_coordinator_with_qsub(hpc_env: Path, dagster_home: Path, monkeypatch):
    _instance_with_launcher(dagster_home, hpc_env / "run_jobs", scheduler="pbs")
    run_id = _launch(hpc_env)
    job_id = wait_until(lambda: _coordinator_running(run_id), 300, "the coordinator job to run")
    script = (hpc_env / "run_jobs" / f"dagster-run-{run_id[:8]}.sh").read_text()
    assert "#PBS -l walltime=00:10:00" in script and "#SBATCH" not in script
    wait_until(lambda: _run(run_id).is_finished, 300, "the run to finish")
    assert _run(run_id).status.value == "SUCCESS", _messages(run_id)
    assert _run(run_id).tags["hpc_workflows/scheduler"] == "pbs"
    assert f"Submitted the run's coordinator as pbs job {job_id}" in _messages(run_id)
    # Run monitoring's view of the finished job, through qstat -f.
    from hpc_workflows.hpc.scheduler_cli import scheduler_for

    assert wait_until(lambda: scheduler_for("pbs").state(job_id).ended, 60, "qstat to show the job ended")
