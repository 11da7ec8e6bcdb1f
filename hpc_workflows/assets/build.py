"""Dagster assets for each dataset file: ``<dataset>/raw`` → ``<dataset>/regridded``, partitioned in time.

Thin over :mod:`hpc_workflows.datasets` and :mod:`hpc_workflows.batching`:

- ``<dataset>/raw`` is the archive's files, which we do not keep (scratch copies are removed once
  an output is verified): an external asset, shown for lineage.
- ``<dataset>/regridded`` is our outputs. A backfill of any range is ONE run
  (``BackfillPolicy.single_run()``) whose one step plans the range, skips partitions complete
  on disk, and processes the rest in batches (:func:`hpc_workflows.batching.run_batch`),
  spread over the run's Dask workers when it runs on one. Each partition that succeeds is
  materialized with its metadata and checks; a failed date fails only its partition, and the
  step fails at the end naming them, so "failed and missing" redoes just those.
- a sensor per dataset keeps partition status true to the disk (:mod:`.reconcile`), and a
  schedule materializes the newest partition once its period has ended.
"""

# (No `from __future__ import annotations`: Dagster reads the context annotation at runtime.)

import base64
import datetime as _dt
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetMaterialization,
    AssetSpec,
    BackfillPolicy,
    DefaultSensorStatus,
    Failure,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    TimeWindowPartitionsDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
    multi_asset,
    sensor,
)

from hpc_workflows.assets.reconcile import raw_key, reconcile, regridded_key
from hpc_workflows.batching import BatchJob, FileResult, Ledger, plan_work, run_batch
from hpc_workflows.datasets import PERIODS, DatasetSpec, batch_job_for, sources_for
from hpc_workflows.hpc.executor import STEP_EXECUTION_TAG
from hpc_workflows.datasets.inspect import check_output, output_figures, preview_png
from hpc_workflows.fetch import Source

__all__ = ["DatasetDefs", "dataset_definitions"]

log = logging.getLogger(__name__)

_CRON = {"hourly": "0 * * * *", "3-hourly": "0 */3 * * *", "daily": "0 0 * * *", "monthly": "0 0 1 * *"}
#: The per-partition checks (hpc_workflows.datasets.inspect.check_output); all blocking.
CHECKS = {
    "opens": "The output opens as netCDF.",
    "cf_conventions": "The output declares CF conventions.",
    "not_all_missing": "No data variable is entirely missing.",
}


def partitions_def(spec: DatasetSpec) -> TimeWindowPartitionsDefinition:
    """Time-window partitions of a dataset (UTC), one per source file."""
    p = spec.partitioning
    end = None
    if p.end_datetime is not None:
        from hpc_workflows.fetch import parse_step

        nxt = p.end_datetime + parse_step(p.step)  # Dagster's end is exclusive
        end = nxt.to_pydatetime() if hasattr(nxt, "to_pydatetime") else nxt
    return TimeWindowPartitionsDefinition(start=p.start_datetime, end=end, fmt=PERIODS[p.period][1],
                                          cron_schedule=_CRON[p.period], timezone="UTC")


def _run_batches(batches: Sequence[Sequence[Any]], job: BatchJob) -> Iterator[list[FileResult]]:
    """Run batches: on the run's other Dask workers when this step runs on one, else here."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
        on_worker = len(batches) > 1
    except (ImportError, ValueError):
        on_worker = False
    if not on_worker:
        for batch in batches:
            yield run_batch(batch, job)
        return
    from distributed import as_completed

    # worker_client secedes this task: its thread is free while the batches run as plain tasks.
    with worker_client() as client:
        futures = [client.submit(run_batch, list(b), job, pure=False) for b in batches]
        for fut in as_completed(futures):
            yield fut.result()


def _partition_metadata(source: Source, result: FileResult, job: BatchJob, ledger: Ledger,
                        previews: bool) -> tuple[dict[str, Any], dict[str, tuple[bool, str]]]:
    """The metadata a scientist checks first, and the outcome of each check, for one partition."""
    meta: dict[str, Any] = {"status": result.status, "settings_hash": job.settings_digest}
    checks: dict[str, tuple[bool, str]] = {}
    if result.fetch.get("sha256"):
        meta["input_sha256"] = result.fetch["sha256"]
    entries = ledger.entries(reload=True)
    for identity in job.outputs_for(source).values():
        path = identity.path
        meta["output"] = MetadataValue.path(str(path))
        if not path.is_file():
            checks["opens"] = (False, f"{path} is missing")
            continue
        meta["bytes"] = path.stat().st_size
        entry = entries.get(path.name) or entries.get(str(path)) or {}
        if entry.get("sha256"):
            meta["output_sha256"] = entry["sha256"]
        figures = output_figures(path)
        meta.update({k: v for k, v in figures.items() if v is not None})
        for out in result.outputs:
            for k, v in out.items():
                if k.startswith("area_mean_") and isinstance(v, (int, float)):
                    meta[k] = v
        checks.update(check_output(path, figures))
        if previews:
            png = preview_png(path)
            if png:
                meta["preview"] = MetadataValue.md(
                    f"![preview](data:image/png;base64,{base64.b64encode(png).decode()})")
    return meta, checks


@dataclass
class DatasetDefs:
    """Everything one dataset contributes to the Definitions."""

    assets: list[Any] = field(default_factory=list)
    sensors: list[Any] = field(default_factory=list)
    schedules: list[Any] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)


def _regridded_asset(spec: DatasetSpec, parts: TimeWindowPartitionsDefinition):
    key = regridded_key(spec)
    check_specs = [AssetCheckSpec(name, asset=key, description=desc, blocking=True, partitions_def=parts)
                   for name, desc in CHECKS.items()]

    @multi_asset(
        name=f"{spec.name}__regridded",
        specs=[AssetSpec(key, deps=[raw_key(spec)], skippable=True, partitions_def=parts,
                         group_name=spec.name, kinds={"netcdf"},
                         description=f"Regridded outputs of dataset {spec.name} ({spec.path.name}), one file "
                                     f"per {spec.partitioning.period} partition.")],
        check_specs=check_specs,
        partitions_def=parts,
        backfill_policy=BackfillPolicy.single_run(),
        # The dataset's execution: is the cluster its backfills, schedules and sensors run on.
        op_tags={"kind": "dataset", **({STEP_EXECUTION_TAG: json.dumps(spec.execution_config)}
                                       if spec.execution_config else {})},
    )
    def regridded(context: AssetExecutionContext):
        keys = list(context.partition_keys)
        job = batch_job_for(spec, keys)
        sources = sources_for(spec, keys)
        by_source = {s.key: (pk, s) for s, pk in zip(sources, keys)}
        ledger = Ledger(job.output_dir)
        plan = plan_work(sources, job, spec.workflow.batching.files_per_step if spec.workflow.batching else None,
                         ledger=ledger)
        context.log.info(f"{spec.name}: {len(keys)} partition(s), {len(plan.complete)} already complete on "
                         f"disk, {plan.todo} to do in {len(plan.batches)} batch(es)")
        started, done, failed = time.monotonic(), 0, {}
        previews = len(keys) <= 400  # a preview is ~10 kB of event log: not for archive-sized ranges
        results = [_complete(s) for s in plan.complete]
        for batch_results in _run_batches(plan.batches, job):
            results.extend(batch_results)
            done += len(batch_results)
            context.log.info(f"{spec.name}: {done}/{plan.todo} files processed "
                             f"({time.monotonic() - started:.0f} s)")
        for result in results:
            pk, source = by_source[result.key]
            if result.status == "failed":
                failed[pk] = result.error or "failed"
                continue
            meta, checks = _partition_metadata(source, result, job, ledger, previews)
            blocked = [name for name, (ok, _) in checks.items() if not ok]
            for name, (ok, description) in checks.items():
                yield AssetCheckEvaluation(asset_key=regridded_key(spec), check_name=name, passed=ok,
                                           partition=pk, description=description, blocking=True,
                                           severity=AssetCheckSeverity.ERROR)
            if blocked:
                failed[pk] = f"blocking check(s) failed: {', '.join(blocked)}"
                continue
            yield AssetMaterialization(asset_key=regridded_key(spec), partition=pk, metadata=meta)
        if not failed:
            # The check specs are outputs of this step: one result per check closes them (every
            # partition passed, or the step would fail below); the per-partition evaluations
            # above say which partition each figure is for.
            for name in CHECKS:
                yield AssetCheckResult(asset_key=regridded_key(spec), check_name=name, passed=True,
                                       metadata={"partitions_checked": len(keys)})
            return
        if failed:
            lines = [f"{pk}: {why}" for pk, why in sorted(failed.items())]
            raise Failure(description=f"{len(failed)} of {len(keys)} partition(s) failed; the others are "
                                      "materialized:\n" + "\n".join(lines[:50]),
                          metadata={"failed_partitions": MetadataValue.json(sorted(failed))})

    return regridded


def _complete(source) -> FileResult:
    return FileResult(key=source.key, status="complete", fetch={})


def _status_sensor(spec: DatasetSpec):
    @sensor(name=f"{spec.name}_disk_status", minimum_interval_seconds=120,
            default_status=DefaultSensorStatus.RUNNING,
            description=f"Keeps {spec.name}/regridded's partition status true to the disk "
                        "(reconciliation, see hpc_workflows.assets.reconcile).")
    def disk_status(context: SensorEvaluationContext):
        done = reconcile(context.instance, spec)
        return SkipReason(f"{done.complete}/{done.checked} partitions complete on disk; recorded "
                          f"{len(done.recorded)}, wiped {len(done.wiped)}")

    return disk_status


def _arrival_sensor(spec: DatasetSpec, job):
    """Launch the newest periods whose files have appeared; give up on a file after a while."""
    from hpc_workflows.datasets.arrival import available

    @sensor(name=f"{spec.name}_new_data", job=job, minimum_interval_seconds=spec.arrival.check_every,
            default_status=DefaultSensorStatus.STOPPED,
            description=f"Waits for the source files of {spec.name}'s newest {spec.arrival.lookback} "
                        f"periods and materializes each once its file is there; gives up on a file "
                        f"{spec.arrival.give_up_after} after its period ended.")
    def new_data(context: SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {"gave_up": []}
        now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
        decision = arrivals(spec, context.instance, now, set(state["gave_up"]), available)
        state["gave_up"] = sorted(set(state["gave_up"]) | set(decision.gave_up))[-1000:]
        context.update_cursor(json.dumps(state))
        if not decision.ready:
            return SkipReason(decision.summary())
        return [RunRequest(partition_key=pk, run_key=f"{spec.name}:{pk}") for pk in decision.ready]

    return new_data


@dataclass
class ArrivalDecision:
    """What the new-data sensor does on one tick."""

    ready: list[str]
    waiting: list[str]
    gave_up: list[str]

    def summary(self) -> str:
        return (f"waiting for {', '.join(self.waiting) or 'nothing'}; "
                f"gave up on {', '.join(self.gave_up) or 'nothing'}")


def arrivals(spec: DatasetSpec, instance, now: _dt.datetime, gave_up: set[str], check) -> ArrivalDecision:
    """Sort the newest ended periods not yet materialized into ready / waiting / given up."""
    from hpc_workflows.datasets import partition_keys_between, partition_time
    from hpc_workflows.fetch import parse_step

    step = parse_step(spec.partitioning.step)
    patience = parse_step(spec.arrival.give_up_after)
    last = spec.partitioning.end_datetime
    ended = [k for k in partition_keys_between(spec, spec.partitioning.start_datetime, now)
             if partition_time(spec, k) + step <= now and (last is None or partition_time(spec, k) <= last)]
    newest = ended[-spec.arrival.lookback:]
    done = set(instance.get_materialized_partitions(regridded_key(spec)))
    ready, waiting, given = [], [], []
    for pk, source in zip(newest, sources_for(spec, newest)):
        if pk in done or pk in gave_up:
            continue
        there = check(spec, source)
        if there or there is None:
            ready.append(pk)
        elif partition_time(spec, pk) + step + patience <= now:
            given.append(pk)
        else:
            waiting.append(pk)
    return ArrivalDecision(ready=ready, waiting=waiting, gave_up=given)


def dataset_definitions(spec: DatasetSpec) -> DatasetDefs:
    """The assets, job, schedule and sensor of one dataset."""
    parts = partitions_def(spec)
    raw = AssetSpec(raw_key(spec), partitions_def=parts, group_name=spec.name,
                    description=f"Source files of {spec.name} on the archive ({spec.workflow.source.template}); "
                                "fetched per run, not kept.")
    asset = _regridded_asset(spec, parts)
    job = define_asset_job(f"{spec.name}_job", selection=[regridded_key(spec)], partitions_def=parts,
                           description=f"Materialize {spec.name}/regridded for chosen partitions.")
    schedule = build_schedule_from_partitioned_job(job, name=f"{spec.name}_newest")
    return DatasetDefs(assets=[raw, asset], sensors=[_status_sensor(spec), _arrival_sensor(spec, job)],
                       schedules=[schedule], jobs=[job])
