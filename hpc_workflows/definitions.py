"""The one ``Definitions`` object: every job of hpc_workflows.

Load it with ``dagster dev -m hpc_workflows``, ``dagster-webserver -m hpc_workflows``,
``dagit -h HOST -p PORT -m hpc_workflows`` or
``dagster job execute -m hpc_workflows -j fetch_and_regrid -c configs/dev.yaml``.
"""

from __future__ import annotations

from dagster import Definitions, job

from hpc_workflows.hpc.executor import hpc_dask_executor
from hpc_workflows.pipeline.jobs import fetch_and_regrid_graph

# The executor every job uses; configured per run under `execution:` in the YAML.
EXECUTOR = hpc_dask_executor


# The graph is nested in the job (rather than `graph.to_job`) so that its config mapping
# applies to `ops: {fetch_and_regrid: {config: ...}}` and `execution:` stays configurable.
@job(
    name="fetch_and_regrid",
    description="Fetch the files of a date window, regrid each to a target grid, write CF netCDF.",
    executor_def=EXECUTOR,
)
def fetch_and_regrid_job() -> None:
    # Aliased so the user's YAML says `ops: {fetch_and_regrid: ...}` like the job's name.
    fetch_and_regrid_graph.alias("fetch_and_regrid")()


defs = Definitions(jobs=[fetch_and_regrid_job], executor=EXECUTOR)
