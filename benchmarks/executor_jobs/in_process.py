"""The fan-outs, and a one-op job (the fixed cost of `dagster job execute`), in process."""

import dagster as dg

from benchmarks.executor_jobs.ops import TRIVIAL, WORK, one_op

trivial = TRIVIAL.to_job(name="trivial", executor_def=dg.in_process_executor)
work = WORK.to_job(name="work", executor_def=dg.in_process_executor)
one = one_op.to_job(name="one", executor_def=dg.in_process_executor)

defs = dg.Definitions(jobs=[trivial, work, one])
