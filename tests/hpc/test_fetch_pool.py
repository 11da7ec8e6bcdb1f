"""The shipped fetch_and_regrid job with a ``fetch`` worker pool: each batch is fetched on the
pool's nodes and regridded on the default cluster's.

On the testbed the pool is partition ``multi`` (nodes hpcw-n1..3 in network namespaces,
standing for data movers) and the default cluster ``debug`` (the host node, compute). Each
step records the node it ran on in its output metadata (SLURMD_NODENAME).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.batching.conftest import make_sources

from .conftest import batch_cluster, event_messages, step_events

NODES = {"hpcw-n1", "hpcw-n2", "hpcw-n3"}
DAYS = 5


def _workflow(tmp: Path, out: str) -> dict:
    return {
        "window": {"start": "2020-01-01", "end": f"2020-01-{DAYS:02d}", "step": "24h"},
        "source": {"template": str(tmp / "archive") + "/{dt:%Y%m%d}.nc", "retries": 0},
        "regrid": {"method": "conservative", "target": {"name": "global_10deg"},
                   "weights_dir": str(tmp / "weights")},
        "output": {"directory": str(tmp / out), "name": "tas"},
        "batching": {"files_per_step": 2, "files_in_flight": 2},
    }


def _run(workflow: dict, execution: dict | None):
    """fetch_and_regrid on the DAGSTER_HOME instance (execution None: in this process)."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableJob

    run_config: dict = {"ops": {"fetch_and_regrid": {"config": workflow}}}
    with dg.DagsterInstance.get() as instance:
        if execution is None:
            from hpc_workflows.definitions import fetch_and_regrid_job

            result = fetch_and_regrid_job.execute_in_process(run_config=run_config, instance=instance,
                                                             raise_on_error=False)
            return result.success, instance.all_logs(result.run_id), result.run_id
        recon = ReconstructableJob.for_module("hpc_workflows.definitions", "fetch_and_regrid_job")
        run_config["execution"] = {"config": execution}
        with dg.execute_job(recon, instance=instance, run_config=run_config, raise_on_error=False) as result:
            return result.success, instance.all_logs(result.run_id), result.run_id


def _output_metadata(records, op: str) -> dict[str, dict]:
    """{step key: its output metadata values} of the steps of one op."""
    found = {}
    for r in records:
        event = r.dagster_event
        if event and event.event_type_value == "STEP_OUTPUT" and f".{op}[" in (r.step_key or ""):
            found[r.step_key] = {k: v.value for k, v in event.event_specific_data.metadata.items()}
    return found


@pytest.mark.slurm
@pytest.mark.slow
def test_fetch_steps_run_on_the_fetch_pool_and_regrid_steps_on_compute(testbed, hpc_env):
    make_sources(hpc_env / "archive", DAYS)
    ok, records, _ = _run(_workflow(hpc_env, "plain"), None)  # the reference: one step per batch
    assert ok, event_messages(records)

    fetch_pool = batch_cluster(hpc_env, queue="multi", interface="eth0", scheduler_interface="hpcwbr0")
    ok, records, run_id = _run(_workflow(hpc_env, "pooled"), {
        "cluster": {"slurm": batch_cluster(hpc_env)}, "scale": 1,
        "worker_pools": {"fetch": {"cluster": {"slurm": fetch_pool}, "scale": 1}},
    })
    assert ok, event_messages(records)
    batches = ["20200101_to_20200102", "20200103_to_20200104", "20200105"]
    assert sorted(step_events(records, "STEP_SUCCESS")) == sorted(
        ["fetch_and_regrid.plan_sources", "fetch_and_regrid.summarise"]
        + [f"fetch_and_regrid.{op}[{b}]" for op in ("fetch_batch", "regrid_batch") for b in batches])
    fetched = _output_metadata(records, "fetch_batch")
    regridded = _output_metadata(records, "regrid_batch")
    assert len(fetched) == len(regridded) == 3
    assert all(m["node"] in NODES for m in fetched.values()), fetched
    assert all(m["node"] not in NODES and m["fetched_on"] in NODES for m in regridded.values()), regridded
    assert sum(m["written"] for m in regridded.values()) == DAYS
    assert f"dagster-{run_id[:8]}-fetch" in event_messages(records)  # the pool's own batch job

    plain = json.loads((hpc_env / "plain" / "run_summary.json").read_text())
    pooled = json.loads((hpc_env / "pooled" / "run_summary.json").read_text())
    for key in ("sources", "fetched", "bytes_fetched", "outputs_written", "batch_steps"):
        assert pooled[key] == plain[key], key
    assert [r["key"] for r in pooled["results"]] == [r["key"] for r in plain["results"]]
    assert all(r["status"] == "written" for r in pooled["results"])
    for r in plain["results"]:
        name = Path(r["outputs"][0]["output"]).name
        with xr.open_dataset(hpc_env / "plain" / name) as a, xr.open_dataset(hpc_env / "pooled" / name) as b:
            np.testing.assert_array_equal(a.tas.values, b.tas.values)
            xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))
    workdir = hpc_env / "pooled" / ".work"
    assert not workdir.exists() or not any(workdir.iterdir()), "scratch is freed after regridding"


@pytest.mark.slow
def test_scratch_on_node_local_storage_is_refused_before_any_worker(hpc_env):
    """The fetch pool's nodes write output.workdir and the compute nodes read it: a workdir
    under a cluster's node-local local_directory fails the run in planning, naming the fix."""
    make_sources(hpc_env / "archive", 2)
    workflow = _workflow(hpc_env, "out")
    workflow["output"]["workdir"] = str(hpc_env / "node_tmp" / "work")
    ok, records, _ = _run(workflow, {
        "cluster": {"local": {}}, "scale": 1,
        "worker_pools": {"fetch": {"cluster": {"local": {"local_directory": str(hpc_env / "node_tmp")}},
                                   "scale": 1}},
    })
    assert not ok
    messages = event_messages(records)
    assert "execution.config.worker_pools.fetch.cluster.local.local_directory" in messages, messages
    assert "output.workdir" in messages and "filesystem both see" in messages
    assert "Starting local Dask cluster" not in messages  # nothing was started
    assert step_events(records, "STEP_FAILURE") == ["fetch_and_regrid.plan_sources"]


@pytest.mark.slow
def test_a_file_that_fails_to_fetch_fails_its_regrid_step_alone_without_retries(hpc_env):
    """Local clusters for both pools: a missing file (a FetchError, final) is handed on by its
    fetch step; its regrid step writes the batch's other file, then fails naming it, with no
    retry of either step (a retry would only repeat it)."""
    make_sources(hpc_env / "archive", 4, missing=(2,))
    workflow = _workflow(hpc_env, "out")
    workflow["window"]["end"] = "2020-01-04"
    ok, records, _ = _run(workflow, {
        "cluster": {"local": {}}, "scale": 1,
        "worker_pools": {"fetch": {"cluster": {"local": {}}, "scale": 1}},
    })
    assert not ok
    assert step_events(records, "STEP_FAILURE") == ["fetch_and_regrid.regrid_batch[20200103_to_20200104]"]
    assert not step_events(records, "STEP_UP_FOR_RETRY")
    fetched = _output_metadata(records, "fetch_batch")
    assert fetched["fetch_and_regrid.fetch_batch[20200103_to_20200104]"]["failed"] == 1
    messages = event_messages(records)
    assert "1 of 2 file(s) failed with errors a retry would repeat" in messages
    assert "20200103: FetchError" in messages
    assert sorted(p.name for p in (hpc_env / "out").glob("tas_*.nc")) == [
        "tas_20200101.nc", "tas_20200102.nc", "tas_20200104.nc"]
