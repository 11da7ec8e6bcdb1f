"""The old per-file design for the archive benchmark: one Dagster step per source file.

A static fan-out (dagster-dask's executor runs none of a dynamic fan-out's mapped steps) of
``process_file`` (the same per-file work a batch does), built when the module loads from
``HPCW_BENCH_WORKFLOW`` (a JSON WorkflowConfig). Jobs: ``per_file_in_process``,
``per_file_dagster_dask`` (local cluster of ``HPCW_BENCH_WORKERS`` x 1 thread).
"""

import json
import os

import dagster as dg
from dagster_dask import dask_executor

from hpc_workflows.batching import process_file
from hpc_workflows.config import validate_workflow_config
from hpc_workflows.pipeline.settings import batch_job, planned_sources

_CFG = validate_workflow_config(json.loads(os.environ["HPCW_BENCH_WORKFLOW"]))
_SOURCES = planned_sources(_CFG)


def _file_op(index: int) -> dg.OpDefinition:
    @dg.op(name=f"file_{index}")
    def one_file() -> str:
        result = process_file(_SOURCES[index], batch_job(_CFG))
        if result.status == "failed":
            raise RuntimeError(result.error)
        return result.status

    return one_file


@dg.op(ins={f"f{i}": dg.In(dg.Nothing) for i in range(len(_SOURCES))})
def done() -> None:
    pass


def _graph() -> dg.GraphDefinition:
    ops = [_file_op(i) for i in range(len(_SOURCES))]

    @dg.graph(name="per_file")
    def per_file():
        done(**{f"f{i}": op() for i, op in enumerate(ops)})

    return per_file


_GRAPH = _graph()
per_file_in_process = _GRAPH.to_job(name="per_file_in_process", executor_def=dg.in_process_executor)
_WORKERS = int(os.environ.get("HPCW_BENCH_WORKERS", "2"))
per_file_dagster_dask = _GRAPH.to_job(
    name="per_file_dagster_dask", executor_def=dask_executor,
    config={"execution": {"config": {"cluster": {"local": {"n_workers": _WORKERS, "threads_per_worker": 1}}}}},
)

defs = dg.Definitions(jobs=[per_file_in_process, per_file_dagster_dask])
