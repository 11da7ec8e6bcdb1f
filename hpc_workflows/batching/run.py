"""One batch of files, pipelined: fetch threads feed the regridding, scratch stays bounded.

::

    feeder thread ──(takes a scratch slot; blocks when files_in_flight are taken)──►
        fetch pool (files_in_flight threads): fetch → unpack → merge ──► ready queue ──►
            this thread: regrid → write → verify → record in ledger → remove scratch → free slot

So the first output is written while later files are still being fetched, at most
``files_in_flight`` files are on scratch at once (fetching, fetched and waiting, or being
regridded), and a file's failure is collected in its result, never lost with the others' work.

When the time aggregation's windows cross files (``job.neighbour_step``: 09Z rain days), files
are written in time order, each once the NEXT file's merged input is on scratch too (its first
steps end the file's last windows); a file's scratch goes as soon as it is written, since the
file before it is already done. The next file of the batch's last file belongs to another
batch: it is fetched again into this batch's own scratch (the other batch may be using its own
copy on another worker) and removed once used. Scratch then holds at most
``max(2, files_in_flight)`` files.

With ``fetch.batch_command`` (a tape archive), the files are recalled in groups: one archive
command per group of ``files_in_flight`` files (one less with neighbours), each file then
verified on its own, unpacked and merged (:func:`~hpc_workflows.batching.files.recall_inputs`).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hpc_workflows.batching.files import (
    Fetched,
    FileResult,
    clean_scratch,
    complete_result,
    failed_result,
    fetch_inputs,
    recall_inputs,
    split_complete,
    write_outputs,
)
from hpc_workflows.batching.job import BatchJob
from hpc_workflows.batching.ledger import Ledger
from hpc_workflows.batching.neighbours import following_sources
from hpc_workflows.fetch import Source

__all__ = ["Progress", "run_batch"]

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where a batch is: for a progress line such as ``12/500 files, 340.2 MB, 3.1 files/s``."""

    done: int
    total: int
    failed: int
    complete_before: int  # found complete by the ledger, nothing fetched
    bytes_fetched: int
    seconds: float
    last: FileResult

    @property
    def files_per_s(self) -> float:
        """Files finished per second of this batch so far."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One human line for logs."""
        mb = self.bytes_fetched / 1e6
        rate = mb / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.done}/{self.total} files ({self.complete_before} already complete, "
                f"{self.failed} failed), {mb:.1f} MB fetched, {rate:.1f} MB/s, "
                f"{self.files_per_s:.2f} files/s")


def run_batch(
    sources: Sequence[Source],
    job: BatchJob,
    *,
    ledger: Ledger | None = None,
    progress: Callable[[Progress], None] | None = None,
    log: logging.Logger | None = None,
    run_sources: Sequence[Source] | None = None,
) -> list[FileResult]:
    """Process a batch of sources; return one result per source, in the order given.

    Parameters
    ----------
    sources
        The batch's files.
    job
        Shared settings, including ``files_in_flight`` and ``keep_scratch``.
    ledger
        The output folder's ledger; re-read here, so a retry sees what earlier tries recorded.
    progress
        Called in this thread after every file (the caller throttles what it logs).
    log
        Where fetching logs (retry warnings; default: the fetch logger). Called from threads.
    run_sources
        Every source of the run, when windows cross files (``job.neighbour_step``): the file
        after each one is its neighbour, fetched too when it belongs to another batch.
        Default: the batch itself (its last file then has no neighbour).

    Returns
    -------
    list of FileResult
        Failures included (``status == "failed"``); nothing is raised for a file's failure.
    """
    ledger = ledger or Ledger(job.output_dir)
    ledger.entries(reload=True)
    started = time.perf_counter()
    complete, todo = split_complete(sources, job, ledger)
    results: dict[str, FileResult] = {s.key: complete_result(s, job) for s in complete}
    state = {"done": len(results), "failed": 0, "bytes": 0}
    complete_before = len(results)

    def report(result: FileResult) -> None:
        state["done"] += 1
        state["failed"] += result.status == "failed"
        if result.status == "written" and not result.fetch.get("skipped"):
            state["bytes"] += int(result.fetch.get("bytes") or 0)
        if progress is not None:
            progress(Progress(done=state["done"], total=len(sources), failed=state["failed"],
                              complete_before=complete_before, bytes_fetched=state["bytes"],
                              seconds=time.perf_counter() - started, last=result))

    if complete_before and progress is not None and not todo:
        progress(Progress(done=complete_before, total=len(sources), failed=0,
                          complete_before=complete_before, bytes_fetched=0,
                          seconds=time.perf_counter() - started,
                          last=results[sources[-1].key]))
    for result in _pipeline(todo, job, ledger, log, run_sources):
        results[result.key] = result
        report(result)
    return [results[s.key] for s in sources]


@dataclass(frozen=True)
class FetchItem:
    """One fetch of a batch: a file to write, or only the neighbour of one (another batch's)."""

    source: Source
    job: BatchJob  # whose scratch it goes to
    write: bool
    neighbour: int | None = None  # index of the next file's fetch, when windows cross files
    period: tuple[datetime.datetime, datetime.datetime] | None = None


def neighbours_dir(job: BatchJob, first_key: str) -> Path:
    """The batch's own scratch for neighbours that belong to other batches (by its first file)."""
    return job.workdir / f".neighbours_of_{first_key}"


def plan_fetches(todo: list[Source], job: BatchJob, run_sources: Sequence[Source] | None) -> list[FetchItem]:
    """What a batch fetches, in order: its files, and when windows cross files, each file's
    following file too when that belongs to another batch (fetched again into this batch's own
    scratch: the other batch may be processing it on another worker at the same time)."""
    if job.neighbour_step is None:
        return [FetchItem(s, job, write=True) for s in todo]
    plan = following_sources(run_sources or todo, job.neighbour_step)
    # In time order, so a file's neighbour is fetched right after it and scratch stays bounded.
    todo = sorted(todo, key=lambda s: (s.time is None, s.time or datetime.datetime.min))
    mine = {s.key for s in todo}
    borrowed = dataclasses.replace(job, workdir=neighbours_dir(job, todo[0].key))
    fetches: list[FetchItem] = []
    waiting: dict[str, int] = {}  # next file's key -> index of the file that needs it
    for source in todo:
        if source.key in waiting:  # the previous file's neighbour is this one
            previous = waiting.pop(source.key)
            fetches[previous] = dataclasses.replace(fetches[previous], neighbour=len(fetches))
        following, period = plan.get(source.key, (None, None))
        fetches.append(FetchItem(source, job, write=True, period=period))
        if following is None:
            continue
        if following.key in mine:
            waiting[following.key] = len(fetches) - 1
        else:
            fetches[-1] = dataclasses.replace(fetches[-1], neighbour=len(fetches))
            fetches.append(FetchItem(following, borrowed, write=False))
    return fetches


def _pipeline(todo: list[Source], job: BatchJob, ledger: Ledger, log: logging.Logger | None,
              run_sources: Sequence[Source] | None = None):
    """Yield each source's result as it finishes (fetch in threads, write in this thread).

    Files are written as their fetches end; when windows cross files, in time order instead,
    each once the next file is fetched too (its merged input is read for the windows' ends).
    """
    if not todo:
        return
    fetches = plan_fetches(todo, job, run_sources)
    ordered = job.neighbour_step is not None
    # A file and its neighbour are on scratch together: fewer than two slots would deadlock.
    in_flight = max(2 if ordered else 1, job.files_in_flight)
    slots = threading.Semaphore(in_flight)
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()
    got: dict[int, tuple[Fetched | None, BaseException | None, float]] = {}

    def fetch_group(indices: list[int], began: float) -> None:
        for index, fetched, error in fetch_group_inputs(fetches, indices, job, log):
            ready.put((index, fetched, error, began))

    group = recall_group_size(job, in_flight)

    def feed(pool: ThreadPoolExecutor) -> None:
        for first in range(0, len(fetches), group):
            indices = list(range(first, min(first + group, len(fetches))))
            for _ in indices:
                slots.acquire()  # a scratch slot: freed once this file's scratch is removed
            if stop.is_set():
                for index in indices:
                    ready.put((index, None, RuntimeError("batch stopped before this file was fetched"),
                               time.perf_counter()))
                continue
            try:
                pool.submit(fetch_group, indices, time.perf_counter())
            except RuntimeError:  # the batch ended early and shut the pool down
                return

    def take(index: int | None) -> int:
        """Wait for fetch ``index`` (None: for whichever ends first) and return its index."""
        while index is None or index not in got:
            done, fetched, error, began = ready.get()
            got[done] = (fetched, error, began)
            if index is None:
                return done
        return index

    def release(index: int) -> None:
        item = fetches[index]
        if not item.write:  # a borrowed neighbour: only this batch used it
            shutil.rmtree(item.job.scratch(item.source.key), ignore_errors=True)
        got.pop(index, None)
        slots.release()

    order = [i for i, f in enumerate(fetches) if f.write]
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="hpcw-fetch")
    feeder = threading.Thread(target=feed, args=(pool,), name="hpcw-feed", daemon=True)
    feeder.start()
    try:
        for next_index in order:
            index = take(next_index if ordered else None)
            item = fetches[index]
            fetched, error, began = got[index]
            neighbour: Fetched | Path | None = None
            if item.neighbour is not None:
                take(item.neighbour)
                neighbour, trouble, _ = got[item.neighbour]
                if neighbour is None:  # it stands for a missing neighbour: windows missing
                    neighbour = absent_neighbour(fetches[item.neighbour], trouble, log)
            try:
                yield write_fetched(item, fetched, error, began, job, ledger, neighbour)
            finally:
                release(index)
                if item.neighbour is not None and not fetches[item.neighbour].write:
                    release(item.neighbour)
    finally:
        # Interrupted (step cancelled, generator closed): fetch no more; let running fetches end.
        stop.set()
        for _ in range(len(fetches)):
            slots.release()
        pool.shutdown(wait=False, cancel_futures=True)
        if ordered:
            shutil.rmtree(neighbours_dir(job, fetches[0].source.key), ignore_errors=True)


def recall_group_size(job: BatchJob, in_flight: int) -> int:
    """Files per archive command with ``fetch.batch_command`` (tape recalls), else 1.

    A group is no larger than the scratch slots; with neighbours one less: a group's last file
    waits for the next group's first, which needs a free slot.
    """
    if not job.fetch.batch_command:
        return 1
    return max(1, in_flight - 1) if job.neighbour_step is not None else in_flight


def fetch_group_inputs(fetches: Sequence[FetchItem], indices: list[int], job: BatchJob,
                       log: logging.Logger | None) -> Iterator[tuple[int, Fetched | None, BaseException | None]]:
    """Fetch the files ``indices`` of ``fetches``: each alone, or with ``fetch.batch_command``
    in one archive command (recall), then unpack and merge each.

    Yields ``(index, fetched, None)`` or ``(index, None, error)`` per file as it is ready: a
    file's failure is handed on, never raised, so the group's other files go on.
    """
    if job.fetch.batch_command:
        staging = job.workdir / f".recall_{fetches[indices[0]].source.key}"
        recalled = recall_inputs([(fetches[i].source, fetches[i].job) for i in indices], staging, log)
    else:
        recalled = {}
    for index in indices:
        item = fetches[index]
        got_one = recalled.get(item.source.key)
        if isinstance(got_one, BaseException):
            yield index, None, got_one
            continue
        try:
            fetched = fetch_inputs(item.source, item.job, log, recalled=got_one)
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, which records it
            yield index, None, exc
            continue
        yield index, fetched, None


def write_fetched(item: FetchItem, fetched: Fetched | None, error: BaseException | None, began: float,
                  job: BatchJob, ledger: Ledger, neighbour: Fetched | Path | None = None) -> FileResult:
    """Regrid, write, verify and record one fetched file, then free its scratch; its result.

    ``error``: the file's fetch failed (its result says why). A write failure is returned as a
    failed result too: the batch goes on. After a failure only the unpack folder is removed,
    so a retry resumes the verified download.
    """
    if error is None:
        try:
            outputs = write_outputs(fetched, job, ledger, neighbour=neighbour,  # type: ignore[arg-type]
                                    period=item.period)
        except Exception as exc:  # this file fails; the batch goes on
            error = exc
    if error is not None:
        clean_scratch(job, item.source.key, failed=True)
        return failed_result(item.source, error, began)
    clean_scratch(job, item.source.key, failed=False)
    return FileResult(key=item.source.key, status="written", fetch=fetched.as_dict(),  # type: ignore[union-attr]
                      outputs=outputs, seconds=time.perf_counter() - began)


def absent_neighbour(item: FetchItem, error: BaseException | str | None, log: logging.Logger | None) -> Path:
    """A path standing for a neighbour that could not be fetched (it never exists)."""
    if not item.write:  # another batch's file: its own step reports the failure; say it here
        (log or logger).warning("%s: the next file %s could not be fetched (%s): the windows "
                                "that need it are written missing and redone by a later run",
                                item.job.workdir.name, item.source.key, error)
    return item.job.scratch(item.source.key) / "not-fetched"
