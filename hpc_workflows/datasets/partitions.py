"""Partitions of a dataset ↔ its source files and outputs, and which are complete on disk.

Plain Python: the Dagster assets (:mod:`hpc_workflows.assets`) and the command line use the
same functions, so "which dates exist" has one answer. A partition is complete when every output
of its source file passes the completion rule re-runs use (:mod:`hpc_workflows.batching.ledger`:
the output exists with the size and mtime recorded when it was verified, made with the current
settings from the same source); nothing else counts.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Sequence

from hpc_workflows.batching import BatchJob, Ledger, outputs_complete
from hpc_workflows.config import WorkflowConfig
from hpc_workflows.datasets.spec import PERIODS, DatasetSpec
from hpc_workflows.fetch import Source, parse_step, plan_sources

__all__ = ["batch_job_for", "complete_partitions", "partition_key", "partition_keys_between",
           "partition_time", "sources_for", "workflow_for"]


def partition_key(spec: DatasetSpec, t: _dt.datetime) -> str:
    """The Dagster partition key of the period starting at ``t``."""
    return t.strftime(PERIODS[spec.partitioning.period][1])


def partition_time(spec: DatasetSpec, key: str) -> _dt.datetime:
    """The start of the period a partition key names."""
    return _dt.datetime.strptime(key, PERIODS[spec.partitioning.period][1])


def partition_keys_between(spec: DatasetSpec, start: _dt.datetime, end: _dt.datetime) -> list[str]:
    """Keys of the partitions whose period starts in ``[start, end]``, in time order."""
    step = parse_step(spec.partitioning.step)
    t = max(start, spec.partitioning.start_datetime)
    keys = []
    last = spec.partitioning.end_datetime
    while t <= end and (last is None or t <= last):
        keys.append(partition_key(spec, t))
        nxt = t + step
        t = nxt.to_pydatetime() if hasattr(nxt, "to_pydatetime") else nxt
    return keys


def workflow_for(spec: DatasetSpec, keys: Sequence[str]) -> WorkflowConfig:
    """The dataset's run config with its window set to the partitions ``keys``.

    Each file is one partition and is kept whole (``subset_time`` off): an output, and the
    settings hash recorded with it, must not depend on which range a backfill asked for.
    """
    times = sorted(partition_time(spec, k) for k in keys)
    window = {"start": times[0].isoformat(), "end": times[-1].isoformat(), "step": spec.partitioning.step}
    return spec.workflow.model_copy(update={"window": spec.workflow.window.model_copy(update=window),
                                            "subset_time": False})


def sources_for(spec: DatasetSpec, keys: Sequence[str]) -> list[Source]:
    """One source per partition, keyed so its output name does not depend on the range asked.

    (A run config's keys are as short as its window allows; a dataset's must be the same for a
    date whichever backfill range includes it.)
    """
    fmt = PERIODS[spec.partitioning.period][2]
    template = spec.workflow.source.template or ""
    out = []
    for key in keys:
        t = partition_time(spec, key)
        (source,) = plan_sources(t, t, spec.partitioning.step, template)
        out.append(dataclasses.replace(source, key=t.strftime(fmt)))
    return out


def batch_job_for(spec: DatasetSpec, keys: Sequence[str]) -> BatchJob:
    """The batch settings for processing the partitions ``keys``."""
    from hpc_workflows.pipeline.settings import batch_job

    return batch_job(workflow_for(spec, keys))


def complete_partitions(spec: DatasetSpec, keys: Sequence[str]) -> dict[str, bool]:
    """For each partition key, whether all its outputs are complete on disk (ledger rule)."""
    if not keys:
        return {}
    job = batch_job_for(spec, keys)
    ledger = Ledger(job.output_dir)
    return {key: outputs_complete(source, job, ledger) for key, source in zip(keys, sources_for(spec, keys))}
