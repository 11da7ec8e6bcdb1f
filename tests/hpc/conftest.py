"""Fixtures for the batch-system tests: the real SLURM testbed and helpers to drive runs on it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS_FILE = Path(__file__).with_name("executor_jobs.py")


def sinfo_answers() -> bool:
    """True when slurmctld answers and reports the node in a usable state."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(
        s in out.stdout for s in ("idle", "mixed", "allocated", "completing")
    )


@pytest.fixture(scope="session")
def testbed() -> None:
    """The single-node SLURM cluster (started by ci/testbed/start.sh when it does not answer)."""
    if not sinfo_answers():
        subprocess.run(["bash", str(REPO / "ci" / "testbed" / "start.sh")], check=True, timeout=900)
    assert sinfo_answers(), "the SLURM testbed did not come up (see /var/log/hpc-workflows-testbed)"


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def queue_jobs(name_prefix: str) -> list[tuple[str, str, str]]:
    """(job id, name, state) of the testbed's jobs whose name starts with ``name_prefix``."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    rows = [tuple(line.split("|")) for line in out.splitlines() if line.strip()]
    return [r for r in rows if r[1].startswith(name_prefix)]  # type: ignore[misc]


def batch_cluster(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Batch cluster settings for the testbed (loopback, small jobs, logs under tmp_path)."""
    cfg: dict[str, Any] = {
        "queue": "debug",
        "interface": "lo",
        "cores": 1,
        "memory": "1GiB",
        "walltime": "00:10:00",
        "log_directory": str(tmp_path / "worker_logs"),
    }
    cfg.update(overrides)
    return cfg


def run_test_job(job_name: str, execution: dict[str, Any]):
    """Run a job of executor_jobs.py in this process on the DAGSTER_HOME instance.

    Returns
    -------
    (bool, list of EventLogEntry, str)
        success, every event of the run, run id.
    """
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableJob

    recon = ReconstructableJob.for_file(str(JOBS_FILE), job_name)
    with dg.DagsterInstance.get() as instance:
        with dg.execute_job(
            recon, instance=instance, run_config={"execution": {"config": execution}}, raise_on_error=False
        ) as result:
            records = instance.all_logs(result.run_id)
            return result.success, records, result.run_id


def step_events(records, event_type: str) -> list[str]:
    """Step keys of the events of one type (e.g. "STEP_SUCCESS") in order."""
    return [r.step_key for r in records if r.dagster_event and r.dagster_event.event_type_value == event_type]


def event_messages(records) -> str:
    """All event messages and error texts of a run, for asserting on error wording."""
    parts = []
    for r in records:
        if r.dagster_event is None:
            continue
        parts.append(r.dagster_event.message or "")
        data = r.dagster_event.event_specific_data
        err = getattr(data, "error", None)
        if err is not None:
            parts.append(err.to_string())
    return "\n".join(parts)


@pytest.fixture
def hpc_env(dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DAGSTER_HOME + environment the test jobs read; worker jobs inherit it (sbatch --export=ALL)."""
    monkeypatch.setenv("HPCWF_TEST_MARKERS", str(tmp_path))
    monkeypatch.setenv("HPCWF_TEST_OUT", str(tmp_path / "out.json"))
    monkeypatch.chdir(tmp_path)  # temporary TLS files and anything else land here
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return tmp_path
