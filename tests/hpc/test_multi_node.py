"""Runs across several SLURM nodes, and a node lost in the middle of a run.

The testbed's partition ``multi`` has nodes hpcw-n1..3, each a slurmd in its own network
namespace with its own address (ci/testbed/start.sh): a worker job there can reach the
coordinator only over the bridge (10.213.47.1, interface hpcwbr0), as a compute node reaches a
login node. ``--exclusive`` puts each one-core worker job on its own node.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.hpc.conftest import batch_cluster, run_test_job, wait_until

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

NODES = ("hpcw-n1", "hpcw-n2", "hpcw-n3")


@pytest.fixture
def multi_nodes(testbed):
    """The three namespace nodes, usable; resumed again after the test whatever it did."""
    out = subprocess.run(["sinfo", "-h", "-p", "multi", "-N", "-o", "%N %T"], capture_output=True,
                         text=True, timeout=30).stdout
    states = dict(line.split() for line in out.splitlines() if line.strip())
    assert set(NODES) <= set(states), f"partition multi lacks nodes: {states} (ci/testbed/start.sh)"
    yield NODES
    for node in NODES:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"],
                       capture_output=True, timeout=30)


def _cluster(tmp_path: Path) -> dict:
    # Workers bind their namespace's eth0; the scheduler the bridge the namespaces reach it by.
    return batch_cluster(tmp_path, queue="multi", interface="eth0", scheduler_interface="hpcwbr0",
                         job_extra_directives=["--exclusive"])


def test_workers_spread_over_nodes(multi_nodes, hpc_env, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_FAN", "6")
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "3")
    ok, records, _ = run_test_job("fan_job", {"cluster": {"slurm": _cluster(hpc_env)}, "scale": 3})
    assert ok
    results = json.loads((hpc_env / "out.json").read_text())["results"]
    assert sorted(r["i"] for r in results) == list(range(6))
    used = {r["node"] for r in results}
    assert len(used) >= 2 and used <= set(NODES), used


def test_node_lost_mid_run_and_run_completes(multi_nodes, hpc_env, monkeypatch):
    """A node goes DOWN (SLURM kills its jobs) while a step runs there; every step still ends."""
    monkeypatch.setenv("HPCWF_TEST_FAN", "6")
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "6")
    import threading

    lost: dict = {}

    def a_step_on_some_node():
        for marker in hpc_env.glob("started-*"):
            where = json.loads(marker.read_text())
            if where.get("node") in NODES:
                return where["node"]
        return None

    def lose_a_node() -> None:
        # In a thread: the run itself must be built on the main thread (dask-jobqueue sets signals).
        try:
            lost["node"] = wait_until(a_step_on_some_node, 300, "a step running on a namespace node")
            subprocess.run(["scontrol", "update", f"nodename={lost['node']}", "state=down",
                            "reason=hpcw-test-node-lost"], check=True, timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            lost["error"] = exc

    killer = threading.Thread(target=lose_a_node, daemon=True)
    killer.start()
    outcome = {"result": run_test_job("fan_job", {"cluster": {"slurm": _cluster(hpc_env)}, "scale": 3})}
    killer.join(timeout=60)
    assert "node" in lost, lost
    victim = lost["node"]
    ok, records, _ = outcome["result"]
    assert ok
    results = json.loads((hpc_env / "out.json").read_text())["results"]
    assert sorted(r["i"] for r in results) == list(range(6))
    # The steps that finished did so on the nodes that stayed up, or before the victim went down.
    started_on_victim = [json.loads(m.read_text()) for m in hpc_env.glob("started-*")
                         if json.loads(m.read_text()).get("node") == victim]
    assert started_on_victim
    final_victim = [r for r in results if r["node"] == victim]
    # At least one step that started on the victim had to be run again elsewhere.
    assert len(final_victim) < len(started_on_victim) or not final_victim
