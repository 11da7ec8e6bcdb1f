"""The run's worker-job accounting as a Dagster engine event and ``run_accounting.json``.

The thin Dagster side of :mod:`.accounting`: once the run's cluster has closed (so every job has
a final state), ask the scheduler about the jobs the cluster submitted, write the table to the
event log (UI and console) and the figures to ``run_accounting.json``: next to the run's
``run_summary.json`` when a step reported one (metadata ``summary_file``), else in the run's
folder of the Dagster instance's storage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import MetadataValue
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData

from .accounting import RunAccounting, format_table, run_accounting

ACCOUNTING_FILE = "run_accounting.json"


def _summary_folder(plan_context: Any) -> Path | None:
    """The folder of the run's ``run_summary.json``, from the summarising step's metadata."""
    try:
        records = plan_context.instance.all_logs(plan_context.run_id, of_type=DagsterEventType.STEP_OUTPUT)
    except Exception:  # noqa: BLE001 - fall back to the instance's storage
        return None
    for record in records:
        data = record.dagster_event.event_specific_data if record.dagster_event else None
        meta = getattr(data, "metadata", None) or {}
        value = meta.get("summary_file")
        if value is not None:
            return Path(str(getattr(value, "value", value))).parent
    return None


def _write_private(path: Path, content: str) -> None:
    """Atomically, readable by the owner only (job names and nodes are nobody else's business)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    part.replace(path)


def _closed_clusters(holder: Any) -> list[Any]:
    """The RunClusters the executor opened: one per worker pool (``opened``) or one (``rc``)."""
    opened = getattr(holder, "opened", None)
    if opened is not None:
        return list(opened.values())
    rc = getattr(holder, "rc", None)
    return [rc] if rc is not None else []


def run_accounting_events(plan_context: Any, clusters: Any) -> Iterator[DagsterEvent]:
    """One engine event with the accounting of the run's worker jobs (none without batch jobs).

    Parameters
    ----------
    plan_context : PlanOrchestrationContext
        The run's orchestration context.
    clusters : object
        The executor's holder of the run's closed clusters (each RunCluster's ``ledger`` has the
        job ids and the workers' own reports).
    """
    batch = [rc for rc in _closed_clusters(clusters) if rc.kind in ("slurm", "pbs") and rc.ledger.job_ids]
    if not batch:
        return
    try:
        acct = RunAccounting([
            job for rc in batch
            for job in run_accounting(rc.kind, rc.ledger.job_ids, rc.ledger.worker_reports).jobs
        ])
        folder = _summary_folder(plan_context) or (
            Path(plan_context.instance.storage_directory()) / plan_context.run_id)
        path = folder / ACCOUNTING_FILE
        content = acct.as_dict()
        _write_private(path, json.dumps({"run_id": plan_context.run_id, **content}, indent=1, default=str))
    except Exception as exc:  # noqa: BLE001 - accounting is a report: it never fails the run
        yield DagsterEvent.engine_event(
            plan_context, f"Worker job accounting unavailable: {exc}", EngineEventData())
        return
    totals = content["totals"]
    metadata: dict[str, Any] = {
        "accounting": MetadataValue.md(format_table(acct)),
        "worker_jobs": totals["jobs"],
        "core_hours": float(totals["core_hours"]),
        "failure_classes": MetadataValue.json(totals["failures"]),
        "accounting_file": MetadataValue.path(str(path)),
    }
    if totals["cpu_efficiency"] is not None:
        metadata["cpu_efficiency"] = float(totals["cpu_efficiency"])
    if totals["max_rss"] is not None:
        metadata["max_rss_bytes"] = int(totals["max_rss"])
    yield DagsterEvent.engine_event(
        plan_context,
        f"Worker job accounting: {totals['jobs']} job(s), {totals['core_hours']:.4f} core-hours "
        f"(source: {', '.join(totals['sources'])}); written to {path}",
        EngineEventData(metadata),
    )
