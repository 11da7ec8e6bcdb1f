"""The fan-outs on hpc_dask_executor."""

import dagster as dg
from benchmarks.executor_jobs.ops import TRIVIAL, WORK, one_op
from hpc_workflows.hpc.executor import hpc_dask_executor

trivial = TRIVIAL.to_job(name="trivial", executor_def=hpc_dask_executor)
work = WORK.to_job(name="work", executor_def=hpc_dask_executor)
first_step = one_op.to_job(name="first_step", executor_def=hpc_dask_executor)

defs = dg.Definitions(jobs=[trivial, work, first_step])
