"""The fan-outs on dagster-dask's dask_executor (a static fan-out: it silently runs none of a
dynamic fan-out's mapped steps)."""

import dagster as dg
from dagster_dask import dask_executor

from benchmarks.executor_jobs.ops import TRIVIAL, WORK

trivial = TRIVIAL.to_job(name="trivial", executor_def=dask_executor)
work = WORK.to_job(name="work", executor_def=dask_executor)

defs = dg.Definitions(jobs=[trivial, work])
