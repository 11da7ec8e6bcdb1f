"""One source file, start to end: fetch → unpack/merge → regrid → write → verify → record.

:func:`process_file` is the whole per-file work; a batch (:mod:`.run`) runs the same two
halves, :func:`fetch_inputs` (in fetch threads) and :func:`write_outputs` (in the batch's own
thread), pipelined. A notebook, a test or a date-partitioned asset can call any of them.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_workflows.batching.job import BatchJob, is_netcdf_name
from hpc_workflows.batching.ledger import Ledger
from hpc_workflows.fetch import FetchError, Source, fetch, merge_daily, sha256_file, unpack
from hpc_workflows.fetch.errors import redact_url
from hpc_workflows.fetch.fetcher import FetchResult

logger = logging.getLogger(__name__)

__all__ = ["FileResult", "Fetched", "clean_scratch", "fetch_inputs", "outputs_complete", "process_file",
           "recall_inputs", "write_outputs"]


@dataclass
class Fetched:
    """A source on scratch, ready to regrid: the merged netCDF file of each product."""

    source: Source
    sha256: str
    skipped: bool
    bytes: int
    seconds: float
    products: dict[str, tuple[Path, str]]  # product -> (netCDF path, its sha256)

    def as_dict(self) -> dict[str, Any]:
        """The fetch figures kept in results and the run summary (credentials masked)."""
        return {"url": redact_url(self.source.url), "sha256": self.sha256, "skipped": self.skipped,
                "bytes": self.bytes, "seconds": round(self.seconds, 3)}


@dataclass
class FileResult:
    """What happened to one source file.

    ``status`` is ``written`` (something was (re)built), ``complete`` (the ledger said every
    output is complete: nothing fetched) or ``failed`` (``error`` says why; ``retryable`` is
    False for errors that would fail the same way again: bad data, a permanent fetch error).
    """

    key: str
    status: str
    fetch: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values for step outputs, metadata and ``run_summary.json``."""
        return {"key": self.key, "status": self.status, "fetch": self.fetch, "outputs": self.outputs,
                "error": self.error, "retryable": self.retryable, "seconds": round(self.seconds, 3)}


def fetch_inputs(source: Source, job: BatchJob, log: logging.Logger | None = None, *,
                 recalled: FetchResult | None = None) -> Fetched:
    """Fetch one source to its scratch folder; unpack and merge an archive per product.

    ``log`` receives the fetch's retry warnings and per-file lines (default: the fetch logger).
    ``recalled``: the source is already in its scratch ``download`` folder, verified, by a
    batched recall (:func:`recall_inputs`); only unpacking and merging are left.
    """
    work = job.scratch(source.key)
    result = recalled or fetch(source, work / "download", job.fetch, log=log)
    single = _gridded_format(result.path, job)
    if single == "netcdf":
        products = {"data": (result.path, result.sha256)}
    elif single is not None:  # one NIMROD/PP/GRIB file: to netCDF for the regridder
        from hpc_workflows.formats import to_netcdf

        converted = work / "merged" / f"data_{source.key}.nc"
        converted.parent.mkdir(parents=True, exist_ok=True)
        to_netcdf(result.path, converted, single)
        products = {"data": (converted, sha256_file(converted))}
    else:
        merged = _unpack_and_merge(source, job, result.path, work, fresh_download=not result.skipped,
                                   log=log)
        products = {p: (f, sha256_file(f)) for p, f in merged.items()}
    return Fetched(source=source, sha256=result.sha256, skipped=result.skipped, bytes=result.bytes,
                   seconds=result.seconds, products=products)


def recall_inputs(items: list[tuple[Source, BatchJob]], staging: Path,
                  log: logging.Logger | None = None) -> dict[str, FetchResult | BaseException]:
    """Recall several sources in one archive command (``fetch.batch_command``), then move each
    verified file into its own scratch ``download`` folder, as :func:`fetch_inputs` expects.

    Parameters
    ----------
    items
        ``(source, job)`` pairs: the job says whose scratch a file goes to.
    staging
        A folder of this batch's own for the recall (removed afterwards).
    log
        Where the recall logs.

    Returns
    -------
    dict
        key -> the file's FetchResult (now in its scratch), or the error that source got
        (a file the archive could not give fails alone; the others go on).
    """
    from hpc_workflows.fetch.recall import fetch_batch

    found: dict[str, FetchResult | BaseException] = {}
    try:
        outcome = fetch_batch([s for s, _ in items], staging, items[0][1].fetch, log=log)
        for source, job in items:
            if source.key in outcome.failures:
                found[source.key] = outcome.failures[source.key]
                continue
            result = outcome.results[source.key]
            place = job.scratch(source.key) / "download" / source.filename
            place.parent.mkdir(parents=True, exist_ok=True)
            os.replace(result.path, place)  # same filesystem (both under workdir): atomic
            found[source.key] = dataclasses.replace(result, path=place)
    except Exception as exc:  # noqa: BLE001 - e.g. two sources with one file name: each fails
        for source, _ in items:
            found.setdefault(source.key, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return found


def _gridded_format(path: Path, job: BatchJob) -> str | None:
    """The format of a fetched file that is itself one gridded file; None for an archive.

    By content, not by name (a GRIB file called ``x.nc`` is GRIB), with ``source.format`` as
    given when it is forced. Whatever no format recognises is taken for an archive (tar, zip,
    gzip of several members), which unpacking then checks.
    """
    from hpc_workflows.formats import FormatError, detect

    try:
        found = detect(path)
    except FormatError:
        return None
    if job.source_format in (None, "auto") or job.source_format == found:
        return found
    return job.source_format  # contradicts the content: the conversion or the regrid step refuses it


def _unpack_and_merge(source: Source, job: BatchJob, archive: Path, work: Path,
                      *, fresh_download: bool, log: logging.Logger | None) -> dict[str, Path]:
    """Unpack an archive and merge each product's members into one netCDF for this source."""
    names = job.products_for(archive.name)
    merged = {p: work / "merged" / f"{p}_{source.key}.nc" for p in names}
    if fresh_download:
        # A new download may differ from what an earlier run merged: never reuse those.
        for path in merged.values():
            path.unlink(missing_ok=True)
    elif all(p.is_file() for p in merged.values()):
        return merged
    members = unpack(archive, work / "extract", list(job.members) if job.members else None,
                     job.unpack_limits, log=log)
    for product, out in merged.items():
        mine = [m for m in members if product == "data" or product in m.name]
        if not mine:
            raise FetchError(
                source, f"no unpacked member matches product {product!r} "
                f"({len(members)} member(s) kept by source.members): check source.members/products"
            )
        merge_daily(sorted(mine), out, format=job.source_format)
    # The extract folder can be as large as the archive: free the scratch space now.
    shutil.rmtree(work / "extract", ignore_errors=True)
    return merged


def write_outputs(fetched: Fetched, job: BatchJob, ledger: Ledger, *,
                  neighbour: Fetched | Path | None = None,
                  period: tuple[datetime.datetime, datetime.datetime] | None = None,
                  ) -> list[dict[str, Any]]:
    """Regrid and write each product's output, verify it and record it in the ledger.

    An output the ledger knows but no longer finds complete (changed on disk, other settings)
    is removed first, so the output's own stamp cannot vouch for a file changed after it was
    written; an output the ledger does not know keeps today's check (its stamp of input sha256
    and settings hash) once, and is then recorded.

    Parameters
    ----------
    fetched, job, ledger
        The source on scratch, the run's settings, the output folder's ledger.
    neighbour
        When windows cross files (``job.neighbour_step``): the next file on scratch, or a path
        standing for it when it could not be fetched (the windows that need it come out
        missing). None: no neighbour (the run's last file, or files are independent).
    period
        The window starts this output owns (``[start, start + step)``).
    """
    from hpc_workflows.preprocess import preprocess_file

    wanted = job.outputs_for(fetched.source)
    provenance = [{"url": redact_url(fetched.source.url), "sha256": fetched.sha256}]
    outputs = []
    for product, (path, sha) in fetched.products.items():
        identity = wanted.get(product) or next(iter(wanted.values()))
        if ledger.known(identity.path) and not ledger.is_complete(identity):
            identity.path.unlink(missing_ok=True)
        beside = _neighbour_path(neighbour, product)
        extra: dict[str, Any] = {}
        if job.neighbour_step is not None:
            extra = {"neighbours": [beside] if beside is not None else [], "period": period}
        result = preprocess_file(path, identity.path, job.preprocess, input_sha256=sha,
                                 provenance_sources=provenance, **extra)
        _verify(identity.path, sha, job.settings_digest)
        # Made while its neighbour was missing: written (its windows that needed the neighbour
        # are missing) but NOT recorded, so the ledger does not call it complete and the next
        # run rebuilds it once the neighbour is there. Checked on disk too: a skipped output
        # (its stamp names the neighbour as missing) reports no missing neighbours itself.
        if not result.missing_neighbours and (beside is None or beside.is_file()):
            ledger.record(identity, input_sha256=sha)
        outputs.append(result.as_metadata())
    return outputs


def _neighbour_path(neighbour: Fetched | Path | None, product: str) -> Path | None:
    """The neighbour's merged input of the same product (a path that may not exist)."""
    if neighbour is None or isinstance(neighbour, Path):
        return neighbour
    found = neighbour.products.get(product) or neighbour.products.get("data")
    # A neighbour without this product stands for a missing one (a path that never exists).
    return found[0] if found else Path(f"<no {product} in {neighbour.source.key}>")


def _verify(output: Path, input_sha256: str, digest: str) -> None:
    """The written output opens as netCDF and carries this input's and these settings' stamp."""
    import netCDF4

    from hpc_workflows.netcdf_lock import NETCDF_LOCK
    from hpc_workflows.preprocess import _INPUT_ATTR, _SETTINGS_ATTR  # the stamp preprocess writes

    try:
        with NETCDF_LOCK, netCDF4.Dataset(output) as nc:
            ok = (getattr(nc, _INPUT_ATTR, None) == input_sha256
                  and getattr(nc, _SETTINGS_ATTR, None) == digest)
    except OSError:
        ok = False
    if not ok:
        raise OSError(f"{output} did not verify after writing (unreadable or without its stamp): "
                      "it will be rebuilt on retry")


def clean_scratch(job: BatchJob, key: str, *, failed: bool) -> None:
    """Free a source's scratch: all of it after success (unless keep_scratch); after a failure
    only the unpack folder, so a retry resumes the verified or partial download."""
    work = job.scratch(key)
    if failed:
        shutil.rmtree(work / "extract", ignore_errors=True)
    elif not job.keep_scratch:
        shutil.rmtree(work, ignore_errors=True)


def is_final(exc: BaseException) -> bool:
    """Errors a retry would only repeat: a fetch error (the transports already retried
    transient faults inside) and bad data (ValueError: grid, variables, window)."""
    return isinstance(exc, (FetchError, ValueError))


def failed_result(source: Source, exc: BaseException, started: float) -> FileResult:
    """The result of a source whose fetch or write raised ``exc``."""
    if not is_final(exc):  # unexpected: the traceback goes to the process log (worker log)
        logger.warning("%s failed: %s", source.key, exc, exc_info=exc)
    return FileResult(key=source.key, status="failed",
                      fetch={"url": redact_url(source.url), "sha256": None, "skipped": False,
                             "bytes": 0, "seconds": 0.0},
                      error=f"{type(exc).__name__}: {exc}", retryable=not is_final(exc),
                      seconds=time.perf_counter() - started)


def complete_result(source: Source, job: BatchJob) -> FileResult:
    """The result of a source whose outputs the ledger already finds complete."""
    return FileResult(key=source.key, status="complete",
                      fetch={"url": redact_url(source.url), "sha256": None, "skipped": True,
                             "bytes": 0, "seconds": 0.0},
                      outputs=[{"output": str(i.path), "skipped": True}
                               for i in job.outputs_for(source).values()])


def outputs_complete(source: Source, job: BatchJob, ledger: Ledger) -> bool:
    """Whether every output of ``source`` is complete by the ledger rule (nothing to do)."""
    wanted = list(job.outputs_for(source).values())
    return len(ledger.completed(wanted)) == len(wanted)


def split_complete(sources: Sequence[Source], job: BatchJob,
                   ledger: Ledger) -> tuple[list[Source], list[Source]]:
    """``sources`` split into (complete by the ledger rule, still to do), each in order.

    One ``stat`` per output: planning, batches and their halves all decide the same way.
    """
    complete: list[Source] = []
    todo: list[Source] = []
    for source in sources:
        (complete if outputs_complete(source, job, ledger) else todo).append(source)
    return complete, todo


def process_file(source: Source, job: BatchJob, ledger: Ledger | None = None,
                 log: logging.Logger | None = None) -> FileResult:
    """All the work for one source, in this thread; failures are returned, not raised.

    Parameters
    ----------
    source
        The file to fetch.
    job
        The run's shared settings.
    ledger
        The output folder's ledger (opened here if not given).
    log
        Where the fetch logs (default: the fetch logger).

    Returns
    -------
    FileResult
    """
    ledger = ledger or Ledger(job.output_dir)
    started = time.perf_counter()
    if outputs_complete(source, job, ledger):
        return complete_result(source, job)
    try:
        fetched = fetch_inputs(source, job, log)
        outputs = write_outputs(fetched, job, ledger)
    except Exception as exc:  # collected per file: one bad file must not lose the others
        clean_scratch(job, source.key, failed=True)
        return failed_result(source, exc, started)
    clean_scratch(job, source.key, failed=False)
    return FileResult(key=source.key, status="written", fetch=fetched.as_dict(), outputs=outputs,
                      seconds=time.perf_counter() - started)
