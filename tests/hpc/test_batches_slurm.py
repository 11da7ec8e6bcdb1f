"""fetch_and_regrid on the SLURM testbed: batch steps in worker jobs; a re-run with nothing to
do plans and summarises on the coordinator and queues no worker job (checked with squeue)."""

from __future__ import annotations

import copy
import json
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, batch_cluster, event_messages, step_events

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("testbed")]


class _QueueWatch:
    """Every job name squeue shows while the block runs (polled from a thread)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True,
                                 timeout=30).stdout
            self.names.update(out.split())
            self._stop.wait(0.2)

    def __enter__(self) -> _QueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _run(run_config: dict):
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableJob

    recon = ReconstructableJob.for_module("hpc_workflows.definitions", "fetch_and_regrid_job")
    with dg.DagsterInstance.get() as instance:
        with dg.execute_job(recon, instance=instance, run_config=run_config, raise_on_error=False) as result:
            return result.success, instance.all_logs(result.run_id), result.run_id


def test_rerun_with_nothing_to_do_queues_no_worker_job(hpc_env: Path, monkeypatch):
    monkeypatch.chdir(REPO)  # the demo's manifest path is relative to the repository
    cfg = copy.deepcopy(yaml.safe_load((REPO / "configs" / "dev.yaml").read_text()))
    cfg["ops"]["fetch_and_regrid"]["config"]["output"]["directory"] = str(hpc_env / "out")
    cfg["execution"] = {"config": {"cluster": {"slurm": batch_cluster(hpc_env)}, "scale": 1}}

    with _QueueWatch() as first_queue:
        ok, records, first_id = _run(cfg)
    assert ok, event_messages(records)
    assert sorted(step_events(records, "STEP_SUCCESS")) == [
        "fetch_and_regrid.plan_sources", "fetch_and_regrid.process_batch[A1B]",
        "fetch_and_regrid.process_batch[E1]", "fetch_and_regrid.summarise"]
    assert any(n.startswith(f"dagster-{first_id[:8]}") for n in first_queue.names), first_queue.names

    with _QueueWatch() as second_queue:
        ok, records, second_id = _run(cfg)
    assert ok, event_messages(records)
    assert sorted(step_events(records, "STEP_SUCCESS")) == [
        "fetch_and_regrid.plan_sources", "fetch_and_regrid.summarise"]
    assert not any(n.startswith(f"dagster-{second_id[:8]}") for n in second_queue.names), second_queue.names
    assert "Dask cluster" not in event_messages(records)
    summary = json.loads((hpc_env / "out" / "run_summary.json").read_text())
    assert summary["run_id"] == second_id and summary["already_complete"] == 2
