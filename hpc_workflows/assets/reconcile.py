"""Keep Dagster's partition status true to the disk.

Chosen mechanism: *reconciliation*, run by a sensor per dataset (every few minutes while the
daemon runs), by ``hpc-workflows datasets sync``, and before every backfill. It compares the
partitions Dagster believes materialized with what the completion rule finds on disk
(:func:`hpc_workflows.datasets.complete_partitions`: the ledger written when each output was
verified) and fixes Dagster's side both ways:

- complete on disk, unknown to Dagster (written by the ``fetch_and_regrid`` job, an earlier
  instance, or by hand and then recorded): a runless materialization is reported, with
  ``recorded_from: disk`` in its metadata;
- materialized in Dagster, gone or changed on disk: the partition is wiped, so it shows as
  missing and a "missing only" backfill redoes it.

Observations (``observable_source_asset``) were not used: they record a data version, not
materialized/missing, and the partitions page and "backfill missing" read materializations.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from dagster import AssetKey, AssetMaterialization, DagsterInstance

from hpc_workflows.datasets import DatasetSpec, complete_partitions, partition_keys_between

__all__ = ["Reconciled", "reconcile", "regridded_key", "raw_key"]


def regridded_key(spec: DatasetSpec) -> AssetKey:
    """The asset key of a dataset's outputs."""
    return AssetKey([spec.name, "regridded"])


def raw_key(spec: DatasetSpec) -> AssetKey:
    """The asset key of a dataset's source files (on the archive; not stored by us)."""
    return AssetKey([spec.name, "raw"])


@dataclass(frozen=True)
class Reconciled:
    """What one reconciliation changed."""

    recorded: list[str]  # partitions found complete on disk and reported materialized
    wiped: list[str]  # partitions Dagster had as materialized, missing on disk
    complete: int  # partitions complete on disk (of those checked)
    checked: int


def _ended_keys(spec: DatasetSpec, now: _dt.datetime | None = None) -> list[str]:
    now = now or _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    end = spec.partitioning.end_datetime or now
    return partition_keys_between(spec, spec.partitioning.start_datetime, min(end, now))


def _wipe_partitions(instance: DagsterInstance, key: AssetKey, wiped: list[str], keep: list[str]) -> None:
    """Forget the materializations of ``wiped``; keep the latest of ``keep`` as it was.

    Open-source Dagster's SQL event logs cannot wipe single partitions (NotImplementedError), only
    a whole asset: then the latest materialization of every partition that stays is read first
    and reported again after the wipe, with its metadata, so only the older history goes.
    """
    try:
        instance.wipe_asset_partitions(key, wiped)
        return
    except NotImplementedError:
        pass
    from dagster import AssetRecordsFilter

    latest: dict[str, AssetMaterialization] = {}
    for i in range(0, len(keep), 500):
        chunk = keep[i:i + 500]
        result = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=chunk),
                                                 limit=len(chunk) * 20)
        for record in result.records:  # newest first
            mat = record.asset_materialization
            if mat is not None and mat.partition not in latest:
                latest[mat.partition] = mat
    instance.wipe_assets([key])
    for partition in keep:
        old = latest.get(partition)
        meta = dict(old.metadata) if old is not None else {}
        meta["recorded_from"] = "disk (kept when other partitions were wiped)"
        instance.report_runless_asset_event(AssetMaterialization(
            asset_key=key, partition=partition, metadata=meta,
            description=(old.description if old is not None else None)))


def reconcile(instance: DagsterInstance, spec: DatasetSpec, keys: list[str] | None = None) -> Reconciled:
    """Make the materialized partitions of ``spec`` in ``instance`` match the disk.

    Parameters
    ----------
    instance
        The Dagster instance.
    spec
        The dataset.
    keys
        Partitions to check (default: every partition whose period has started).
    """
    keys = _ended_keys(spec) if keys is None else keys
    on_disk = complete_partitions(spec, keys)
    key = regridded_key(spec)
    known = set(instance.get_materialized_partitions(key)) & set(keys)
    recorded = [k for k in keys if on_disk[k] and k not in known]
    wiped = sorted(k for k in known if not on_disk.get(k, False))
    for k in recorded:
        instance.report_runless_asset_event(AssetMaterialization(
            asset_key=key, partition=k, metadata={"recorded_from": "disk"},
            description="complete and verified on disk (found by reconciliation)"))
    if wiped:
        _wipe_partitions(instance, key, wiped, keep=sorted(known - set(wiped)))
    return Reconciled(recorded=recorded, wiped=wiped, complete=sum(on_disk.values()), checked=len(keys))
