"""A batch in two halves on two kinds of node: fetch on data movers, regrid on compute nodes.

At many centres only some nodes reach the tape archive or the internet. Then a batch is
fetched by :func:`fetch_batch` on such a node and regridded by :func:`regrid_batch` on a
compute node; what passes between them is a :class:`FetchedBatch` (small: paths and
checksums), while the fetched files stay in the batch's scratch folders (``job.workdir``),
which must therefore be on a filesystem both kinds of node see.

The two halves are the same per-file work as :func:`~hpc_workflows.batching.run.run_batch`
(:func:`~hpc_workflows.batching.run.plan_fetches`, :func:`~hpc_workflows.batching.run.fetch_group_inputs`,
:func:`~hpc_workflows.batching.run.write_fetched`), without the pipelining: the whole batch is
fetched first (``files_in_flight`` fetch threads), so up to a batch's files (plus, when windows
cross files, the next batch's first file) are on scratch between the two halves. A file that
fails to fetch is a failed file, handed on in the batch's results, not a failed batch.

Plain Python (no Dagster)::

    fetched = fetch_batch(sources, job)      # on a data-mover node
    results = regrid_batch(fetched, job)     # on a compute node: one FileResult per source
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from hpc_workflows.batching.files import (
    Fetched,
    FileResult,
    clean_scratch,
    complete_result,
    failed_result,
    outputs_complete,
    split_complete,
)
from hpc_workflows.batching.job import BatchJob
from hpc_workflows.batching.ledger import Ledger
from hpc_workflows.batching.run import (
    FetchItem,
    Progress,
    absent_neighbour,
    fetch_group_inputs,
    neighbours_dir,
    plan_fetches,
    recall_group_size,
    write_fetched,
)
from hpc_workflows.fetch import Source

__all__ = ["FetchedBatch", "HandoffGate", "SharedScratchError", "fetch_batch", "node_name", "regrid_batch"]


class SharedScratchError(ValueError):
    """A fetched file is not visible where it is regridded: the scratch folder is not shared.

    A ValueError, so a step retry (which would only repeat it) is not attempted.
    """


def node_name() -> str:
    """The node this process runs on, as the batch system names it (SLURM), else its host name.

    On SLURM the node name is not always the host name (the testbed's nodes share one host).
    """
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


@dataclass
class FetchedBatch:
    """What the fetch half of a batch hands the regrid half.

    Attributes
    ----------
    keys
        The batch's source keys, in the order given (results come back in this order).
    items
        Every fetch of the batch (its files; with windows across files, borrowed neighbours).
    fetched, errors, seconds
        Per item: the file on scratch (None if its fetch failed), why it failed, fetch seconds.
    results
        Sources needing no regrid: complete by the ledger, or failed to fetch (failed results).
    node
        Where the files were fetched (named in the error when the regrid node cannot see them).
    """

    keys: list[str]
    items: list[FetchItem]
    fetched: list[Fetched | None]
    errors: list[str | None]
    seconds: list[float]
    results: dict[str, FileResult] = field(default_factory=dict)
    node: str = ""

    @property
    def fetch_failures(self) -> list[FileResult]:
        """The batch's files that failed to fetch."""
        return [r for r in self.results.values() if r.status == "failed"]

    @property
    def bytes_fetched(self) -> int:
        """Bytes downloaded by this fetch (verified files already on scratch not counted)."""
        return sum(f.bytes for f in self.fetched if f is not None and not f.skipped)


def fetch_batch(
    sources: Sequence[Source],
    job: BatchJob,
    *,
    ledger: Ledger | None = None,
    log: logging.Logger | None = None,
    run_sources: Sequence[Source] | None = None,
    on_fetched: Callable[[int, int], None] | None = None,
) -> FetchedBatch:
    """Fetch, unpack, merge and verify a batch's files to scratch; nothing is regridded.

    Parameters
    ----------
    sources
        The batch's files.
    job
        Shared settings; ``files_in_flight`` fetch threads (with ``fetch.batch_command``, one
        archive command per group of files, as in :func:`~hpc_workflows.batching.run.run_batch`).
    ledger
        The output folder's ledger: files it finds complete are not fetched.
    log
        Where fetching logs (retry warnings). Called from the fetch threads.
    run_sources
        Every source of the run, when windows cross files (see ``run_batch``).
    on_fetched
        Called in this thread with ``(done, total)`` after each fetch ends.

    Returns
    -------
    FetchedBatch
        Failures included (in ``results``); nothing is raised for a file's failure.
    """
    ledger = ledger or Ledger(job.output_dir)
    complete, todo = split_complete(sources, job, ledger)
    results: dict[str, FileResult] = {s.key: complete_result(s, job) for s in complete}
    items = plan_fetches(todo, job, run_sources) if todo else []
    fetched: list[Fetched | None] = [None] * len(items)
    errors: list[str | None] = [None] * len(items)
    seconds = [0.0] * len(items)
    in_flight = max(1, job.files_in_flight)
    group = recall_group_size(job, in_flight)

    def fetch_group(indices: list[int]) -> list[tuple[int, Fetched | None, BaseException | None, float]]:
        began = time.perf_counter()
        return [(i, f, e, time.perf_counter() - began)
                for i, f, e in fetch_group_inputs(items, indices, job, log)]

    done = 0
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="hpcw-fetch") as pool:
        futures = [pool.submit(fetch_group, list(range(first, min(first + group, len(items)))))
                   for first in range(0, len(items), group)]
        for future in as_completed(futures):
            for index, got, error, took in future.result():
                fetched[index], seconds[index] = got, took
                item = items[index]
                if error is not None:
                    errors[index] = f"{type(error).__name__}: {error}"
                    if item.write:  # a borrowed neighbour's failure is its own batch's to report
                        clean_scratch(job, item.source.key, failed=True)
                        results[item.source.key] = failed_result(item.source, error,
                                                                 time.perf_counter() - took)
                done += 1
                if on_fetched is not None:
                    on_fetched(done, len(items))
    return FetchedBatch(keys=[s.key for s in sources], items=items, fetched=fetched, errors=errors,
                        seconds=seconds, results=results, node=node_name())


class HandoffGate:
    """Bounds the batches of a run that are fetched but not yet regridded.

    Fetch steps do not otherwise wait for regrid steps: when the data movers outrun the
    compute nodes, fetched files pile up on scratch (measured: all 40 files of a 4-batch run
    at once, benchmarks/pools_bench.py). Each fetched batch leaves a marker
    ``<workdir>/.fetched/<run_id>/<batch>`` (the scratch is shared, so every node sees them)
    until its regrid ends; a fetch waits while ``limit`` markers are there.

    Parameters
    ----------
    workdir
        The run's scratch (``output.workdir``), shared by the fetch and compute nodes.
    run_id
        The run's id: markers of other (or crashed) runs do not count.
    limit
        Batches allowed to wait for or be in regridding (None: no bound).
    """

    def __init__(self, workdir: Path, run_id: str, limit: int | None):
        self.folder = workdir / ".fetched" / run_id
        self.limit = limit

    def pending(self) -> int:
        """Batches of this run fetched and not yet regridded."""
        try:
            return sum(1 for _ in self.folder.iterdir())
        except FileNotFoundError:
            return 0

    def wait_for_room(self, timeout: float, poll: float = 1.0) -> bool:
        """Wait until fewer than ``limit`` batches are pending; False if ``timeout`` s passed."""
        if self.limit is None:
            return True
        deadline = time.monotonic() + timeout
        while self.pending() >= self.limit:
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        return True

    def hold(self, batch: str) -> None:
        """Mark ``batch`` fetched (call once its files are on scratch)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / batch).touch()

    def release(self, batch: str) -> None:
        """Unmark ``batch`` (call when its regrid ends, whatever the outcome)."""
        (self.folder / batch).unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the run's markers (when the run ends), and their folder once no run has any."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:  # another run's markers are there, or it never existed
            pass


def _unseen(fetched: Fetched, batch: FetchedBatch, job: BatchJob) -> SharedScratchError | None:
    """The error when a fetched file is not on this node's view of scratch, else None."""
    for path, _ in fetched.products.values():
        if not Path(path).is_file():
            return SharedScratchError(
                f"{path} was fetched on {batch.node} but is not visible on {node_name()}: "
                f"output.workdir ({job.workdir}) must be on a filesystem that the fetch pool's "
                "nodes and the compute nodes both see (docs/production.md, Worker pools)")
    return None


def regrid_batch(
    batch: FetchedBatch,
    job: BatchJob,
    *,
    ledger: Ledger | None = None,
    log: logging.Logger | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> list[FileResult]:
    """Regrid, write, verify and record each fetched file of a batch; free its scratch.

    Parameters
    ----------
    batch
        What :func:`fetch_batch` returned (possibly on another node).
    job
        Shared settings (the same run's).
    ledger
        The output folder's ledger; re-read here, so a retry finds what earlier tries wrote
        complete instead of looking for scratch already removed.
    log
        Where a missing neighbour is reported.
    progress
        Called in this thread after every file.

    Returns
    -------
    list of FileResult
        One per source, in the batch's order; failures (fetch or regrid) included.
    """
    ledger = ledger or Ledger(job.output_dir)
    started = time.perf_counter()
    results = dict(batch.results)
    complete_before = sum(r.status == "complete" for r in results.values())
    state = {"failed": sum(r.status == "failed" for r in results.values()), "bytes": 0}
    try:
        for index, item in enumerate(batch.items):
            key = item.source.key
            if not item.write or key in results:
                continue
            fetched = batch.fetched[index]
            if outputs_complete(item.source, job, ledger):  # an earlier try of this step wrote it
                clean_scratch(job, key, failed=False)
                result = complete_result(item.source, job)
            else:
                neighbour: Fetched | Path | None = None
                if item.neighbour is not None:
                    neighbour = batch.fetched[item.neighbour] or absent_neighbour(
                        batch.items[item.neighbour], batch.errors[item.neighbour], log)
                unseen = _unseen(fetched, batch, job) if fetched is not None else None
                result = write_fetched(item, fetched, unseen, time.perf_counter() - batch.seconds[index],
                                       job, ledger, neighbour)
            if item.neighbour is not None and not batch.items[item.neighbour].write:
                borrowed = batch.items[item.neighbour]
                shutil.rmtree(borrowed.job.scratch(borrowed.source.key), ignore_errors=True)
            results[key] = result
            state["failed"] += result.status == "failed"
            if result.status == "written" and not result.fetch.get("skipped"):
                state["bytes"] += int(result.fetch.get("bytes") or 0)
            if progress is not None:
                progress(Progress(done=len(results), total=len(batch.keys), failed=state["failed"],
                                  complete_before=complete_before, bytes_fetched=state["bytes"],
                                  seconds=time.perf_counter() - started, last=result))
    finally:
        if job.neighbour_step is not None and batch.items:
            shutil.rmtree(neighbours_dir(job, batch.items[0].source.key), ignore_errors=True)
    return [results[k] for k in batch.keys]
