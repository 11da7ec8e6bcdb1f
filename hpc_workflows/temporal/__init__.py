"""Time aggregation (plain Python, no Dagster): :func:`resample_time`."""

from hpc_workflows.temporal.aggregate import resample_time

__all__ = ["resample_time"]
