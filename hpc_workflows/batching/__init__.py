"""Archive-sized runs: plan, check completion, and process files in pipelined batches.

Plain Python (no Dagster). The ``fetch_and_regrid`` job's ops are thin wrappers over it, and
anything else that needs "which of these outputs are done, do the rest" (a notebook, the
date-partitioned assets) calls the same functions::

    from hpc_workflows.batching import BatchJob, Ledger, plan_work, run_batch

    plan = plan_work(sources, job)                    # one stat per output, no netCDF opened
    for batch in plan.batches:
        results = run_batch(batch, job)               # fetch → regrid → write → verify → record

Modules: `ledger` (the completion rule: :meth:`Ledger.completed`), `job` (BatchJob: shared
settings, output names, batch sizing), `files` (one file's work: :func:`process_file`),
`run` (a batch, pipelined with bounded scratch), `plan` (complete vs. to do, in batches).
"""

from hpc_workflows.batching.files import FileResult, outputs_complete, process_file
from hpc_workflows.batching.job import BatchJob, default_files_per_step, is_netcdf_name
from hpc_workflows.batching.ledger import LEDGER_NAME, Ledger, OutputIdentity, source_identity
from hpc_workflows.batching.plan import WorkPlan, plan_work
from hpc_workflows.batching.run import Progress, run_batch

__all__ = [
    "LEDGER_NAME",
    "BatchJob",
    "FileResult",
    "Ledger",
    "OutputIdentity",
    "Progress",
    "WorkPlan",
    "default_files_per_step",
    "is_netcdf_name",
    "outputs_complete",
    "plan_work",
    "process_file",
    "run_batch",
    "source_identity",
]
