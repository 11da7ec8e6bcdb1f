"""The Dagster layer of datasets: partitioned assets, status reconciliation, schedules, sensors.

Dataset files are read from ``$HPCW_DATASETS`` (default ``configs/datasets`` in the working
directory, i.e. the project folder the UI and job scripts start in).
"""

from hpc_workflows.assets.build import DatasetDefs, dataset_definitions, partitions_def
from hpc_workflows.assets.reconcile import Reconciled, raw_key, reconcile, regridded_key

__all__ = ["DatasetDefs", "Reconciled", "dataset_definitions", "partitions_def", "raw_key", "reconcile",
           "regridded_key"]
