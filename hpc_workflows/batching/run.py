"""One batch of files, pipelined: fetch threads feed the regridding, scratch stays bounded.

::

    feeder thread ──(takes a scratch slot; blocks when files_in_flight are taken)──►
        fetch pool (files_in_flight threads): fetch → unpack → merge ──► ready queue ──►
            this thread: regrid → write → verify → record in ledger → remove scratch → free slot

So the first output is written while later files are still being fetched, at most
``files_in_flight`` files are on scratch at once (fetching, fetched and waiting, or being
regridded), and a file's failure is collected in its result, never lost with the others' work.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hpc_workflows.batching.files import (
    FileResult,
    clean_scratch,
    complete_result,
    failed_result,
    fetch_inputs,
    outputs_complete,
    write_outputs,
)
from hpc_workflows.batching.job import BatchJob
from hpc_workflows.batching.ledger import Ledger
from hpc_workflows.fetch import Source

__all__ = ["Progress", "run_batch"]


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

    Returns
    -------
    list of FileResult
        Failures included (``status == "failed"``); nothing is raised for a file's failure.
    """
    ledger = ledger or Ledger(job.output_dir)
    ledger.entries(reload=True)
    started = time.perf_counter()
    results: dict[str, FileResult] = {}
    todo: list[Source] = []
    for source in sources:
        if outputs_complete(source, job, ledger):
            results[source.key] = complete_result(source, job)
        else:
            todo.append(source)
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
    for result in _pipeline(todo, job, ledger, log):
        results[result.key] = result
        report(result)
    return [results[s.key] for s in sources]


def _pipeline(todo: list[Source], job: BatchJob, ledger: Ledger, log: logging.Logger | None):
    """Yield each source's result as it finishes (fetch in threads, write in this thread)."""
    if not todo:
        return
    in_flight = max(1, job.files_in_flight)
    slots = threading.Semaphore(in_flight)
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()

    def fetch_one(source: Source, began: float) -> None:
        try:
            ready.put((source, fetch_inputs(source, job, log), None, began))
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, which records it
            ready.put((source, None, exc, began))

    def feed(pool: ThreadPoolExecutor) -> None:
        for source in todo:
            slots.acquire()  # a scratch slot: freed once this file's scratch is removed
            if stop.is_set():
                ready.put((source, None, RuntimeError("batch stopped before this file was fetched"),
                           time.perf_counter()))
                continue
            try:
                pool.submit(fetch_one, source, time.perf_counter())
            except RuntimeError:  # the batch ended early and shut the pool down
                return

    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="hpcw-fetch")
    feeder = threading.Thread(target=feed, args=(pool,), name="hpcw-feed", daemon=True)
    feeder.start()
    try:
        for _ in range(len(todo)):
            source, fetched, error, began = ready.get()
            try:
                if error is None:
                    try:
                        outputs = write_outputs(fetched, job, ledger)
                    except Exception as exc:  # this file fails; the batch goes on
                        error = exc
                if error is not None:
                    clean_scratch(job, source.key, failed=True)
                    yield failed_result(source, error, began)
                else:
                    clean_scratch(job, source.key, failed=False)
                    yield FileResult(key=source.key, status="written", fetch=fetched.as_dict(),
                                     outputs=outputs, seconds=time.perf_counter() - began)
            finally:
                slots.release()
    finally:
        # Interrupted (step cancelled, generator closed): fetch no more; let running fetches end.
        stop.set()
        for _ in range(len(todo)):
            slots.release()
        pool.shutdown(wait=False, cancel_futures=True)
