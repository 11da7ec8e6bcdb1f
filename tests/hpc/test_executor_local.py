"""The HPC executor on a local cluster: start failures are reported, nothing is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from .conftest import event_messages, run_test_job


def _worker_processes() -> list[psutil.Process]:
    """This process's Dask worker processes (spawned by multiprocessing)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_local_run_closes_its_workers(hpc_env: Path, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_FAN", "3")
    before = {p.pid for p in _worker_processes()}
    ok, records, _ = run_test_job("fan_job", {"cluster": {"local": {}}, "scale": 2})
    assert ok, event_messages(records)
    assert len(json.loads((hpc_env / "out.json").read_text())["results"]) == 3
    # Worker processes are stopped (killed after a short grace) before the run returns.
    assert {p.pid for p in _worker_processes()} - before == set()


@pytest.mark.parametrize("scaling", [{"scale": 1}, {"adapt": {"minimum": 0, "maximum": 2}}],
                         ids=["scale", "adapt-from-0"])
def test_local_workers_that_cannot_start_fail_the_run_with_the_reason(hpc_env: Path, scaling):
    # A scratch folder below a regular file cannot be created: every worker process fails
    # to start. The run must say so at once instead of waiting out worker_start_timeout.
    blocker = hpc_env / "a_file"
    blocker.write_text("not a folder")
    ok, records, _ = run_test_job(
        "fan_job",
        {"cluster": {"local": {"local_directory": str(blocker / "scratch")}},
         "worker_start_timeout": 120, **scaling},
    )
    assert not ok
    text = event_messages(records)
    assert "local Dask workers failed to start" in text
    assert "local_directory" in text
    assert "worker_start_timeout" not in text
