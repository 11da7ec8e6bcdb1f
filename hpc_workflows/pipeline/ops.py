"""Ops of the fetch-and-regrid workflow: plan → one step per batch of files → summary.

When the run's ``execution.config.worker_pools`` has a pool named ``fetch`` (:data:`FETCH_POOL`),
each batch is two steps instead: ``fetch_batch`` on that pool (data-mover nodes, which reach the
archive) and ``regrid_batch`` on the default cluster (compute nodes); without it, one
``process_batch`` step per batch, as always. ``plan_sources`` emits each batch on exactly one
of the two branches, and ``summarise`` collects both (an empty branch collects to ``[]``).

Each op is a thin wrapper over :mod:`hpc_workflows.batching` (plain Python). A Dagster step
costs ~0.15 s of orchestration and ~10 run events, so files are not steps: a step processes a
batch of files, pipelined, and reports per-file status in its output metadata. Every op takes
the whole validated :class:`~hpc_workflows.config.WorkflowConfig` (the job's config mapping
hands the same config to all of them).
"""


import json
import logging
import queue
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    Backoff,
    DynamicOut,
    DynamicOutput,
    Failure,
    Jitter,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    op,
)

from hpc_workflows.batching import FileResult, Progress, plan_work, run_batch
from hpc_workflows.batching.files import complete_result
from hpc_workflows.batching.results import (
    merged,
    read_results,
    remove_results,
    run_results_dir,
    write_results,
)
from hpc_workflows.batching.split import FetchedBatch, HandoffGate, fetch_batch, node_name, regrid_batch
from hpc_workflows.config import BatchingConfig, WorkflowConfig
from hpc_workflows.fetch import Source
from hpc_workflows.hpc.executor import COORDINATOR_TAG
from hpc_workflows.hpc.pools import POOL_OPTIONAL_TAG, POOL_TAG
from hpc_workflows.pipeline.fetch_pool import (
    FETCH_POOL,
    fetch_pool_of,
    regrid_workers_of,
    shared_workdir_problem,
)
from hpc_workflows.pipeline.settings import batch_job, planned_sources

__all__ = ["fetch_batch_op", "plan_sources_op", "process_batch_op", "regrid_batch_op",
           "summarise_op"]

# A batch step fails at its end when some of its files failed. Files that failed with an
# error a retry would only repeat (a FetchError: the transports already retried transient
# faults inside; bad data) do not make Dagster retry the step. Any other failure (a full
# scratch disk, a worker killed mid-write, an NFS hiccup) does, and the retry redoes only
# the failed files: the ledger says the rest are complete.
STEP_RETRY = RetryPolicy(max_retries=2, delay=5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

#: Seconds between a batch's progress lines (besides its first and last file).
PROGRESS_EVERY_S = 5.0

#: How long a fetch step waits for the regrid steps to free scratch before it fetches anyway
#: (a marker left by a regrid step whose worker was killed must not stall the run for ever).
FETCH_AHEAD_TIMEOUT_S = 1800.0

#: Steps that only read and write small files run in the run's own process, so a run with
#: nothing to do never starts a worker (see hpc_workflows.hpc.executor).
_ON_COORDINATOR = {COORDINATOR_TAG: "coordinator"}


def _source_dict(source: Source) -> dict[str, Any]:
    return {"key": source.key, "url": source.url, "time": source.time,
            "checksum": source.checksum, "size": source.size}


def _batch_key(batch: list[Source]) -> str:
    """A mapping key that says which files a batch holds: ``20200214_to_20200313``."""
    return batch[0].key if len(batch) == 1 else f"{batch[0].key}_to_{batch[-1].key}"


@op(out={"batches": DynamicOut(list), "fetch_batches": DynamicOut(list), "plan": Out(dict)},
    name="plan_sources", tags={"kind": "plan", **_ON_COORDINATOR})
def plan_sources_op(context: OpExecutionContext, config: WorkflowConfig):
    """Plan the window's files, skip those complete by the ledger, and batch the rest.

    Each batch goes to ``fetch_batches`` (fetch and regrid steps) when the run has a ``fetch``
    worker pool, else to ``batches`` (one step each).
    """
    split = fetch_pool_of(context.run_config) is not None
    if split:  # before any worker is started
        problem = shared_workdir_problem(config.output.workdir_path, context.run_config)
        if problem:
            raise Failure(description=problem, allow_retries=False)
    started = time.perf_counter()
    sources = planned_sources(config)
    job = batch_job(config)
    per_step = (config.batching or BatchingConfig()).files_per_step
    plan = plan_work(sources, job, per_step)
    seconds = time.perf_counter() - started
    context.log.info(
        f"planned {len(sources)} file(s) in {seconds:.2f} s: {len(plan.complete)} already complete, "
        f"{plan.todo} to do in {len(plan.batches)} batch step(s) of up to {plan.files_per_step}"
        + (f", each fetched on the '{FETCH_POOL}' worker pool and regridded on the default cluster"
           if split and plan.batches else "")
    )
    complete_file = None
    if plan.complete:  # on disk, not in the step's output: a re-run may find 10,000+ complete
        complete_file = _results_dir(context) / "complete.jsonl"
        write_results(complete_file, (complete_result(s, job).as_dict() for s in plan.complete))
    yield Output({"sources": len(sources), "planning_seconds": round(seconds, 3),
                  "files_per_step": plan.files_per_step, "batches": len(plan.batches),
                  "already_complete": len(plan.complete),
                  "complete_file": str(complete_file) if complete_file else None},
                 output_name="plan",
                 metadata={"sources": len(sources), "already_complete": len(plan.complete),
                           "to_do": plan.todo, "batches": len(plan.batches)})
    for batch in plan.batches:
        yield DynamicOutput([_source_dict(s) for s in batch], mapping_key=_batch_key(batch),
                            output_name="fetch_batches" if split else "batches")


class _RunWarnings:
    """The fetch logger of one batch: warnings (retries, skipped archive members) go to the
    run's event log, per-file info lines only to the process log, so the run history grows
    with problems, not with files. Fetch threads call it; the step's thread forwards."""

    def __init__(self, run_log: Any):
        self._run_log = run_log
        self._local = logging.getLogger("hpc_workflows.fetch")
        self._pending: queue.SimpleQueue = queue.SimpleQueue()

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._local.debug(msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._local.info(msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._pending.put(("warning", msg % args if args else msg))

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._pending.put(("error", msg % args if args else msg))

    def forward(self) -> None:
        """Write what the fetch threads queued to the run's log (call from the step's thread)."""
        while True:
            try:
                level, text = self._pending.get_nowait()
            except queue.Empty:
                return
            getattr(self._run_log, level)(text)


class _ProgressLog:
    """A progress line at INFO for the first file, every few seconds, and the last file."""

    def __init__(self, context: OpExecutionContext, warnings: _RunWarnings, every_s: float):
        self._context, self._warnings, self._every = context, warnings, every_s
        self._next = 0.0

    def __call__(self, progress: Progress) -> None:
        self._warnings.forward()
        now = time.monotonic()
        if now >= self._next or progress.done == progress.total:
            self._next = now + self._every
            self._context.log.info(progress.line())


def _per_file(results: list[FileResult]) -> list[dict[str, Any]]:
    """One short record per file for the step's metadata (the UI's per-file status)."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"key": r.key, "status": r.status, "seconds": round(r.seconds, 2)}
        if r.outputs:
            row["outputs"] = [o.get("output") for o in r.outputs]
        if r.error:
            row["error"] = r.error
        rows.append(row)
    return rows


@op(name="process_batch", retry_policy=STEP_RETRY, tags={"kind": "batch"})
def process_batch_op(context: OpExecutionContext, config: WorkflowConfig, batch: list) -> Output[dict]:
    """Fetch, regrid, write, verify and record each file of a batch, pipelined.

    Fails at the end, listing the failed files, when any failed; the others' work is kept
    (and recorded), so a retry redoes only the failed files.
    """
    job = batch_job(config)
    sources = [Source(**s) for s in batch]
    warnings = _RunWarnings(context.log)
    # Windows across files: the run's other files name each file's neighbour.
    run_sources = planned_sources(config) if job.neighbour_step is not None else None
    results = run_batch(sources, job, progress=_ProgressLog(context, warnings, PROGRESS_EVERY_S),
                        log=warnings,  # type: ignore[arg-type]  # a logger for what fetch calls
                        run_sources=run_sources)
    warnings.forward()
    return _batch_output(results, _results_file(context))


def _results_dir(context: OpExecutionContext) -> Path:
    """Where this run's steps leave their files' results for its summary."""
    return run_results_dir(Path(context.instance.storage_directory()), context.run_id)


def _results_file(context: OpExecutionContext) -> Path:
    """Where this batch step leaves its files' results for the run's summary."""
    return _results_dir(context) / f"{context.get_mapping_key() or 'batch'}.jsonl"


def _batch_output(results: list[FileResult], results_file: Path, extra: Mapping[str, Any] | None = None,
                  not_retried: frozenset[str] = frozenset()) -> Output[dict]:
    """A batch step's output and per-file metadata; a Failure at its end if a file failed.

    The results themselves go to ``results_file`` (before a failure too: the summary of a run
    whose step fails for good still lists them); the output is only its path and count.
    ``not_retried``: keys of failed files a retry of this step could not redo (they failed in
    an earlier step, e.g. their fetch): they do not make the step retry.
    """
    write_results(results_file, (r.as_dict() for r in results))
    failed = [r for r in results if r.status == "failed"]
    metadata = {
        **(extra or {}),
        "files": len(results),
        "written": sum(r.status == "written" for r in results),
        "already_complete": sum(r.status == "complete" for r in results),
        "failed": len(failed),
        "per_file": MetadataValue.json(_per_file(results)),
    }
    if failed:
        listing = "\n".join(f"  - {r.key}: {r.error}" for r in failed[:50])
        more = f"\n  ... and {len(failed) - 50} more (see per_file)" if len(failed) > 50 else ""
        retry = any(r.retryable and r.key not in not_retried for r in failed)
        raise Failure(
            description=f"{len(failed)} of {len(results)} file(s) failed"
            f"{'' if retry else ' with errors a retry would repeat (not retried)'}; the others "
            f"are written and recorded:\n{listing}{more}",
            metadata=metadata,
            allow_retries=retry,
        )
    return Output({"results_file": str(results_file), "files": len(results)}, metadata=metadata)


def _progress_every(context: OpExecutionContext, what: str, every_s: float):
    """``(done, total)`` -> an INFO line for the first, every few seconds, and the last."""
    due = [0.0]

    def line(done: int, total: int) -> None:
        now = time.monotonic()
        if now >= due[0] or done == total:
            due[0] = now + every_s
            context.log.info(f"{done}/{total} {what}")
    return line


@op(name="fetch_batch", retry_policy=STEP_RETRY,
    tags={"kind": "fetch", POOL_TAG: FETCH_POOL, POOL_OPTIONAL_TAG: "true"})
def fetch_batch_op(context: OpExecutionContext, config: WorkflowConfig, batch: list) -> Output[FetchedBatch]:
    """Fetch, unpack, merge and verify a batch's files into the run's scratch (output.workdir),
    on the ``fetch`` worker pool; its ``regrid_batch`` step does the rest.

    A file that fails to fetch is handed on as a failed file, except that an error a retry
    could help with (not a FetchError: the transports already retried inside) retries this
    step first, while retries are left: the retry fetches only what is not verified on scratch.
    """
    job = batch_job(config)
    sources = [Source(**s) for s in batch]
    # Scratch stays bounded: fetch only while fewer than two batches per worker of the default
    # cluster are fetched and not yet regridded (the data movers may outrun the compute nodes).
    # Two, not one: each compute worker then has its next batch ready while it regrids one,
    # so fetching and regridding overlap.
    workers = regrid_workers_of(context.run_config)
    gate = HandoffGate(job.workdir, context.run_id, 2 * workers if workers else None)
    if gate.limit is not None and gate.pending() >= gate.limit:
        context.log.info(f"waiting for scratch: {gate.pending()} batch(es) fetched and not yet "
                         f"regridded (at most {gate.limit}: two per worker of the default cluster)")
    if not gate.wait_for_room(FETCH_AHEAD_TIMEOUT_S):
        context.log.warning(f"fetching although {gate.pending()} batch(es) still wait for regridding "
                            f"after {FETCH_AHEAD_TIMEOUT_S:.0f} s (a regrid step lost its worker?)")
    warnings = _RunWarnings(context.log)
    run_sources = planned_sources(config) if job.neighbour_step is not None else None
    fetched = fetch_batch(sources, job, log=warnings,  # type: ignore[arg-type]  # a logger for what fetch calls
                          run_sources=run_sources,
                          on_fetched=_progress_every(context, "files fetched", PROGRESS_EVERY_S))
    warnings.forward()
    failures = fetched.fetch_failures
    metadata = {"node": node_name(), "files": len(sources),
                "fetched": sum(f is not None for f in fetched.fetched), "failed": len(failures),
                "bytes_fetched": fetched.bytes_fetched}
    retryable = [r for r in failures if r.retryable]
    if retryable and context.retry_number < STEP_RETRY.max_retries:
        listing = "\n".join(f"  - {r.key}: {r.error}" for r in retryable[:50])
        raise Failure(description=f"{len(retryable)} of {len(sources)} file(s) failed to fetch with "
                      f"errors a retry may fix; retrying (the others stay on scratch):\n{listing}",
                      metadata=metadata, allow_retries=True)
    gate.hold(context.get_mapping_key() or "batch")
    return Output(fetched, metadata=metadata)


@op(name="regrid_batch", retry_policy=STEP_RETRY, tags={"kind": "batch"})
def regrid_batch_op(context: OpExecutionContext, config: WorkflowConfig, fetched: FetchedBatch) -> Output[dict]:
    """Regrid, write, verify and record each file its ``fetch_batch`` step fetched, on the
    default cluster; fails at its end, like ``process_batch``, when any file failed (fetch
    failures included, which a retry of this step does not redo)."""
    job = batch_job(config)
    warnings = _RunWarnings(context.log)
    try:
        results = regrid_batch(fetched, job, log=warnings,  # type: ignore[arg-type]
                               progress=_ProgressLog(context, warnings, PROGRESS_EVERY_S))
    finally:  # its files are off scratch (or kept for a retry): the next fetch may start
        HandoffGate(job.workdir, context.run_id, None).release(context.get_mapping_key() or "batch")
    warnings.forward()
    return _batch_output(results, _results_file(context),
                         extra={"node": node_name(), "fetched_on": fetched.node},
                         not_retried=frozenset(r.key for r in fetched.fetch_failures))


def _missing_files(config: WorkflowConfig, have: Iterator[str]) -> list[str]:
    """Keys of planned files without a result (``have``: the keys that have one, in order).

    None unless some batch step never ran: Dagster's re-execution from failure can leave out
    mapped steps that had not started when the parent run died; their files would otherwise
    vanish from the summary without a word.
    """
    keys = set(have)
    return [s.key for s in planned_sources(config) if s.key not in keys]


@op(name="summarise", tags={"kind": "summary", **_ON_COORDINATOR})
def summarise_op(context: OpExecutionContext, config: WorkflowConfig, plan: dict,
                 batches: list[dict], regridded: list[dict]) -> Output[dict]:
    """Write ``run_summary.json`` next to the outputs and report the run's totals.

    ``batches``: the outputs of ``process_batch`` steps; ``regridded``: of ``regrid_batch``
    steps (runs with a ``fetch`` worker pool). One of the two is empty. Each names the file of
    its results: they are read as streams, twice (totals, then the summary's list in key
    order), so memory does not grow with the number of files.
    """
    paths = [Path(b["results_file"]) for b in [*batches, *regridded]]
    if plan.get("complete_file"):
        paths.insert(0, Path(plan["complete_file"]))
    totals = {"sources": 0, "fetched": 0, "bytes": 0, "fetch_seconds": 0.0, "written": 0, "skipped": 0}
    for path in paths:
        for r in read_results(path):
            totals["sources"] += 1
            if r["status"] == "written" and not r["fetch"]["skipped"]:
                totals["fetched"] += 1
                totals["bytes"] += r["fetch"]["bytes"]
                totals["fetch_seconds"] += r["fetch"]["seconds"]
            totals["written"] += sum(1 for o in r["outputs"] if not o["skipped"])
            totals["skipped"] += sum(1 for o in r["outputs"] if o["skipped"])
    missing = (_missing_files(config, (r["key"] for r in merged(paths)))
               if totals["sources"] < plan["sources"] else [])
    summary: dict[str, Any] = {
        "run_id": context.run_id,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": totals["sources"],
        "already_complete": plan["already_complete"],
        "planning_seconds": plan["planning_seconds"],
        "batch_steps": plan["batches"],
        "files_per_step": plan["files_per_step"],
        "fetched": totals["fetched"],
        "fetch_skipped": totals["sources"] - totals["fetched"],
        "bytes_fetched": totals["bytes"],
        "fetch_mb_per_s": (round(totals["bytes"] / 1e6 / totals["fetch_seconds"], 2)
                           if totals["fetch_seconds"] > 0 else None),
        "outputs_written": totals["written"],
        "outputs_skipped": totals["skipped"],
    }
    if missing:
        summary["missing"] = missing
    path = config.output.directory_path / "run_summary.json"
    part = path.with_name(path.name + ".part")
    with open(part, "w") as fh:  # streamed: the per-file list is never in memory as a whole
        head = json.dumps(summary, indent=1, default=str, allow_nan=False)
        fh.write(head[:-2] + ',\n "results": [')
        for i, r in enumerate(merged(paths)):
            fh.write(("," if i else "") + "\n  " + json.dumps(r, default=str, allow_nan=False))
        fh.write("\n ]\n}\n")
    part.replace(path)
    HandoffGate(config.output.workdir_path, context.run_id, None).remove()  # runs with a fetch pool
    context.log.info(
        f"run summary: {summary['sources']} source(s), {summary['already_complete']} already complete, "
        f"{summary['fetched']} fetched, {summary['outputs_written']} output(s) written, "
        f"{summary['outputs_skipped']} already complete; summary in {path}"
    )
    if missing:
        # After the summary is written: it says what the run did do.
        raise Failure(
            description=(
                f"{len(missing)} planned file(s) have no result in this run "
                f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}): their batch steps "
                "never ran. A re-execution 'from failure' skips mapped steps that had not started "
                "(dagster-io/dagster#19490); re-execute with 'all steps' instead: complete files "
                "are skipped, so only the rest is done."),
            metadata={"missing": len(missing), "summary_file": str(path)},
            allow_retries=False,
        )
    # The results are in the summary now; their folders (this run's, and a parent run's when
    # this one re-executed only part of it) are no longer needed.
    remove_results(paths)
    summary["summary_file"] = str(path)
    return Output(summary, metadata={"summary_file": str(path), "sources": summary["sources"],
                                     "outputs_written": summary["outputs_written"],
                                     "outputs_skipped": summary["outputs_skipped"]})
