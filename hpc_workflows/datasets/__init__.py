"""Datasets declared once (one YAML each) and cut into time partitions; plain Python.

:mod:`.spec` loads and validates dataset files; :mod:`.partitions` maps partition keys to source
files and outputs and says which are complete on disk. The Dagster assets over them live in
:mod:`hpc_workflows.assets`.
"""

from hpc_workflows.datasets.partitions import (
    batch_job_for,
    complete_partitions,
    partition_key,
    partition_keys_between,
    partition_time,
    sources_for,
    workflow_for,
)
from hpc_workflows.datasets.spec import PERIODS, DatasetError, DatasetSpec, Partitioning, load_dataset, load_datasets

__all__ = [
    "PERIODS", "DatasetError", "DatasetSpec", "Partitioning", "batch_job_for", "complete_partitions",
    "load_dataset", "load_datasets", "partition_key", "partition_keys_between", "partition_time",
    "sources_for", "workflow_for",
]
