"""Two worker pools in one run: ops tagged ``hpc_workflows/worker_pool`` run on their pool.

On the testbed the ``fetch`` pool is the partition ``multi`` (nodes hpcw-n1..3 in network
namespaces, standing for data-mover nodes) and the default cluster is ``debug`` (the host node,
standing for compute nodes). Each step records the node and partition SLURM gave its worker.
"""

from __future__ import annotations

import json

import pytest

from tests.hpc.conftest import batch_cluster, event_messages, run_test_job

NODES = {"hpcw-n1", "hpcw-n2", "hpcw-n3"}


@pytest.mark.slurm
@pytest.mark.slow
def test_each_op_runs_on_its_pools_partition(testbed, hpc_env):
    fetch_pool = batch_cluster(hpc_env, queue="multi", interface="eth0",
                               scheduler_interface="hpcwbr0")
    ok, records, run_id = run_test_job("pools_job", {
        "cluster": {"slurm": batch_cluster(hpc_env)},
        "scale": 1,
        "worker_pools": {"fetch": {"cluster": {"slurm": fetch_pool}, "scale": 1}},
    })
    assert ok, event_messages(records)
    placed = {r["op"]: r for r in json.loads((hpc_env / "out.json").read_text())}
    assert placed["fetch_like"]["partition"] == "multi", placed
    assert placed["fetch_like"]["node"] in NODES, placed
    assert placed["regrid_like"]["partition"] == "debug", placed
    assert placed["regrid_like"]["node"] not in NODES, placed
    # Two clusters, so two batch jobs, the pool's named after it.
    assert placed["fetch_like"]["slurm_job_id"] != placed["regrid_like"]["slurm_job_id"]
    messages = event_messages(records)
    assert f"dagster-{run_id[:8]}-fetch" in messages


def test_unknown_pool_fails_the_run_before_any_worker(hpc_env):
    """A tag naming a pool the config lacks fails the run at once, naming tag, steps and fix."""
    ok, records, _ = run_test_job("pools_job", {"cluster": {"local": {}}, "scale": 1})
    assert not ok
    messages = event_messages(records)
    assert "'fetch'" in messages and "hpc_workflows/worker_pool" in messages
    assert "fetch_like" in messages and "worker_pools: {fetch:" in messages
    assert "Starting local Dask cluster" not in messages  # nothing was started


def test_pool_settings_are_validated():
    from hpc_workflows.hpc.settings import validate_executor_settings

    with pytest.raises(ValueError, match=r"worker_pools\.fetch needs a cluster"):
        validate_executor_settings({"worker_pools": {"fetch": {"scale": 1}}})
    with pytest.raises(ValueError, match=r"execution\.config\.worker_pools\.fetch: cluster\.slurm needs scale"):
        validate_executor_settings({"worker_pools": {"fetch": {"cluster": {"slurm": {}}}}})
    with pytest.raises(ValueError, match="cannot have pools of its own"):
        validate_executor_settings({"worker_pools": {"a": {"cluster": {"local": {}}, "worker_pools": {
            "b": {"cluster": {"local": {}}}}}}})
