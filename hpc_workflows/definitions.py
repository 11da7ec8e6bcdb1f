"""The one ``Definitions`` object: every job of hpc_workflows.

Load it with ``dagster dev -m hpc_workflows``, ``dagster-webserver -m hpc_workflows``,
``dagit -h HOST -p PORT -m hpc_workflows`` or
``dagster job execute -m hpc_workflows -j fetch_and_regrid -c configs/dev.yaml``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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


def _dataset_parts() -> tuple[list, list, list, list]:
    """Assets, jobs, schedules and sensors of every dataset file; a bad file is logged and left out.

    Dataset files live in ``$HPCW_DATASETS`` (default ``configs/datasets`` under the working
    directory). One bad file must not take the other datasets (or the jobs) down with it: its
    error, which names the field and the fix, goes to the log of whatever loads the code (the
    UI's terminal, ``dagster``/``dg`` commands) and to ``hpc-workflows datasets check``.
    """
    folder = Path(os.environ.get("HPCW_DATASETS", "configs/datasets"))
    if not folder.is_dir():
        return [], [], [], []
    from hpc_workflows.assets import dataset_definitions
    from hpc_workflows.datasets import load_datasets

    specs, errors = load_datasets(folder)
    for error in errors.values():
        logging.getLogger("hpc_workflows.datasets").error("dataset left out: %s", error)
    assets, jobs, schedules, sensors = [], [], [], []
    for spec in specs:
        parts = dataset_definitions(spec)
        assets += parts.assets
        jobs += parts.jobs
        schedules += parts.schedules
        sensors += parts.sensors
    return assets, jobs, schedules, sensors


_assets, _jobs, _schedules, _sensors = _dataset_parts()
defs = Definitions(jobs=[fetch_and_regrid_job, *_jobs], assets=_assets, schedules=_schedules,
                   sensors=_sensors, executor=EXECUTOR)
