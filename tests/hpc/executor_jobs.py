"""Small Dagster jobs the HPC executor tests run (loaded by file path on the workers).

Step behaviour is steered by environment variables, since batch workers inherit the
submitter's environment (sbatch/qsub export it): HPCWF_TEST_FAN (fan-out width),
HPCWF_TEST_STEP_SECONDS (how long each `work` step runs), HPCWF_TEST_OUT (where `collect` writes
its JSON), HPCWF_TEST_MARKERS (folder for the flaky op's attempt markers).
"""

import json
import os
import time
from pathlib import Path

import dagster as dg

from hpc_workflows.hpc.executor import COORDINATOR_TAG, hpc_dask_executor
from hpc_workflows.hpc.pools import POOL_TAG
from hpc_workflows.hpc.step_budget import EXPECTED_DURATION_TAG


def _where(context) -> dict:
    return {
        "run_id": context.run_id,
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "node": os.environ.get("SLURMD_NODENAME"),
        "partition": os.environ.get("SLURM_JOB_PARTITION"),
        "pbs_jobid": os.environ.get("PBS_JOBID"),
    }


@dg.op(out=dg.DynamicOut(int))
def fan_out():
    for i in range(int(os.environ.get("HPCWF_TEST_FAN", "4"))):
        yield dg.DynamicOutput(i, mapping_key=f"k{i}")


@dg.op
def work(context, i: int) -> dict:
    markers = os.environ.get("HPCWF_TEST_MARKERS")
    if markers:  # lets a test find the batch job running this step, to kill it mid-step
        Path(markers, f"started-{i}-{os.getpid()}").write_text(json.dumps(_where(context)))
    deadline = time.monotonic() + float(os.environ.get("HPCWF_TEST_STEP_SECONDS", "0"))
    while time.monotonic() < deadline:  # busy-ish wait: the step really occupies its worker
        time.sleep(0.05)
    return {"i": i, **_where(context)}


@dg.op
def collect(context, results: list[dict]) -> list[dict]:
    payload = json.dumps({"run_id": context.run_id, "results": results})
    out = os.environ.get("HPCWF_TEST_OUT")
    if out:
        Path(out).write_text(payload)
    markers = os.environ.get("HPCWF_TEST_MARKERS")
    if markers:  # per run: workers shared by several runs see one environment
        Path(markers, f"collect-{context.run_id}.json").write_text(payload)
    return results


@dg.job(executor_def=hpc_dask_executor)
def fan_job():
    collect(fan_out().map(work).collect())


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2))
def flaky(context) -> int:
    """Fails on its first attempt (a marker file remembers attempts across workers)."""
    marker = Path(os.environ["HPCWF_TEST_MARKERS"]) / f"flaky-{context.run_id}"
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if attempts == 1:
        raise RuntimeError("transient failure on attempt 1")
    return attempts


@dg.op
def after_flaky(attempts: int) -> int:
    return attempts


@dg.op
def broken() -> int:
    raise ValueError("this step always fails")


@dg.op
def after_broken(x: int) -> int:
    return x + 1


@dg.job(executor_def=hpc_dask_executor)
def retry_skip_job():
    after_flaky(flaky())
    after_broken(broken())


@dg.op(tags={"dagster-dask/resource_requirements": json.dumps({"GPU": 1})})
def needs_gpu() -> int:
    return 1


@dg.job(executor_def=hpc_dask_executor)
def gpu_job():
    needs_gpu()


@dg.op
def dask_sum() -> dict:
    """A dask computation inside a step: which scheduler and how many threads it got."""
    import dask
    import dask.array as da
    import numpy as np
    import threading

    seen = set()

    def record(block):
        seen.add(threading.get_ident())
        time.sleep(0.05)
        return block

    # meta given: dask would otherwise call `record` once in this thread to infer it.
    x = da.ones((64, 64), chunks=(8, 8)).map_blocks(record, meta=np.array((), dtype=float))
    total = float(x.sum().compute())
    from hpc_workflows.hpc.worker_step import step_threads

    return {
        "total": total,
        "threads_used": len(seen),
        "step_threads": step_threads(),
        "scheduler": str(dask.config.get("scheduler", None)),
    }


@dg.op
def report_dask(context, info: dict) -> dict:
    out = os.environ.get("HPCWF_TEST_OUT")
    if out:
        Path(out).write_text(json.dumps(info))
    return info


@dg.job(executor_def=hpc_dask_executor)
def dask_in_step_job():
    report_dask(dask_sum())


@dg.op(tags={POOL_TAG: "fetch"})
def fetch_like(context) -> dict:
    """Stands for a fetch: runs on the ``fetch`` worker pool (a data-mover queue)."""
    return {"op": "fetch_like", **_where(context)}


@dg.op
def regrid_like(context, fetched: dict) -> list[dict]:
    """Stands for a regrid: untagged, so it runs on the run's default cluster."""
    return [fetched, {"op": "regrid_like", **_where(context)}]


@dg.op(tags={COORDINATOR_TAG: "coordinator"})
def report_where(context, placed: list[dict]) -> list[dict]:
    Path(os.environ["HPCWF_TEST_OUT"]).write_text(json.dumps(placed))
    return placed


@dg.job(executor_def=hpc_dask_executor)
def pools_job():
    report_where(regrid_like(fetch_like()))


def _timed(context, i: int) -> dict:
    """Runs HPCWF_TEST_STEP_SECONDS (under what the op's tag promises); records when, and where."""
    start = time.time()
    where = {"i": i, "start": start, "job_start": float(os.environ.get("HPCWF_JOB_START") or 0),
             **_where(context)}
    Path(os.environ["HPCWF_TEST_MARKERS"], f"timed-started-{i}-{os.getpid()}").write_text(json.dumps(where))
    deadline = time.monotonic() + float(os.environ.get("HPCWF_TEST_STEP_SECONDS", "0"))
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {**where, "end": time.time()}


@dg.op(tags={EXPECTED_DURATION_TAG: "55"})
def timed_work(context, i: int) -> dict:
    return _timed(context, i)


@dg.job(executor_def=hpc_dask_executor)
def timed_job():
    collect(fan_out().map(timed_work).collect())


@dg.op(tags={EXPECTED_DURATION_TAG: "60"})
def timed_first(context) -> dict:
    return _timed(context, 0)


@dg.op(tags={EXPECTED_DURATION_TAG: "60"})
def timed_second(context, first: dict) -> list[dict]:
    return [first, _timed(context, 1)]


@dg.job(executor_def=hpc_dask_executor)
def timed_chain_job():
    collect(timed_second(timed_first()))


@dg.op(tags={EXPECTED_DURATION_TAG: "01:00:00"})
def hour_long() -> int:
    return 1


@dg.job(executor_def=hpc_dask_executor)
def hour_long_job():
    hour_long()


defs = dg.Definitions(jobs=[fan_job, retry_skip_job, gpu_job, dask_in_step_job, pools_job, timed_job,
                            hour_long_job, timed_chain_job])
