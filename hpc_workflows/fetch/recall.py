"""Batched, throttled recalls from a tape archive: many files in one archive-client command.

Tape archives reward one request for many files (``moo get -f SRC1 SRC2 ... DIR`` recalls them
in one tape pass) and punish many concurrent clients.  `fetch_batch` sends a list of sources
as one command (``FetchSettings.batch_command``), inside one of
``FetchSettings.max_archive_commands`` slots shared by every thread, process and run on the
node (or the cluster, with ``host_lock_dir`` on a shared filesystem).  The client writes
into a private staging folder; each file is then verified on its own (size, checksum) and
renamed into place, so a partial failure keeps what worked, and only the missing or wrong
files go into the next, smaller batch.

Plain Python: a batch step (`hpc_workflows.batching`) calls it with its list of sources.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hpc_workflows.fetch.argv import build_argv, check_command_arguments, single_file_form
from hpc_workflows.fetch.command import CommandTransport, run_client, stderr_tail
from hpc_workflows.fetch.errors import FetchError, TransferFailed, redact_url
from hpc_workflows.fetch.fetcher import (
    FetchResult,
    checksum_problem,
    ensure_writable_dir,
    expected_checksum,
    fetch,
    verified_existing,
)
from hpc_workflows.fetch.partfile import fsync_dir, fsync_file
from hpc_workflows.fetch.retry import retry_delay
from hpc_workflows.fetch.settings import FetchSettings
from hpc_workflows.fetch.source import Source
from hpc_workflows.fetch.verify import file_digests, parse_checksum

logger = logging.getLogger("hpc_workflows.fetch")

__all__ = ["BatchOutcome", "build_batch_argv", "fetch_batch"]


@dataclass
class BatchOutcome:
    """What happened to each source of a batch.

    Attributes
    ----------
    results : dict
        ``key -> FetchResult`` for files now in place (fetched or already complete).
    failures : dict
        ``key -> FetchError`` for files that could not be fetched (naming the reason).
    commands : int
        Archive-client commands run (one per batch attempt).
    """

    results: dict[str, FetchResult] = field(default_factory=dict)
    failures: dict[str, FetchError] = field(default_factory=dict)
    commands: int = 0

    @property
    def ok(self) -> bool:
        """True when every source is in place."""
        return not self.failures


def build_batch_argv(template: list[str], srcs: list[str], dest_dir: str) -> list[str]:
    """Expand the ``{src}`` argument to one argument per source and fill ``{dest_dir}``."""
    argv: list[str] = []
    for arg in template:
        if arg == "{src}":
            argv.extend(srcs)
        else:
            argv.append(arg.format_map({"dest_dir": dest_dir}))
    return argv


def _check_options(template: list[str], sources: list[Source], staging: str) -> None:
    """No source may reach the client as an option (see `hpc_workflows.fetch.preflight`)."""
    single = single_file_form(template)
    for source in sources:
        check_command_arguments(single, build_argv(single, src=source.url, dest=staging), source)


def fetch_batch(
    sources: list[Source],
    dest_dir: Path,
    settings: FetchSettings,
    *,
    log: logging.Logger | None = None,
) -> BatchOutcome:
    """Fetch ``sources`` from an archive in as few client commands as possible, throttled.

    Files already complete and verified in ``dest_dir`` are skipped.  The rest are recalled by
    one ``settings.batch_command``; after it, each file is verified on its own and renamed
    into place.  Files missing or wrong after a batch (the client failed part-way, or reported
    a temporary error for some files) are recalled again in a smaller batch, up to
    ``settings.retries`` times, with backoff; after an exit status listed in
    ``command_permanent_exit_codes`` missing files are not retried.  Without a
    ``batch_command`` each source is fetched on its own with `fetch`.

    Parameters
    ----------
    sources : list of Source
        The files of one batch (their file names must differ).
    dest_dir : Path
        Folder the files end up in, each under its `Source.filename`.
    settings : FetchSettings
        With ``batch_command`` (and ``command`` for checksum sidecars), ``retries``,
        ``max_archive_commands``, ``host_lock_dir``.
    log : logging.Logger, optional
        Where to log (e.g. a Dagster context logger).

    Returns
    -------
    BatchOutcome
        Per-source results and failures; it never raises for one file's failure.

    Raises
    ------
    ValueError
        If two sources share a file name, or a source would reach the client as an option.
    """
    log = log or logger
    dest_dir = Path(dest_dir)
    outcome = BatchOutcome()
    if not sources:
        return outcome
    names = [s.filename for s in sources]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"fetch_batch: several sources are saved as {clash}; give each a distinct file name")
    if settings.batch_command is None:
        for source in sources:
            try:
                outcome.results[source.key] = fetch(source, dest_dir, settings, log=log)
            except FetchError as exc:
                outcome.failures[source.key] = exc
        return outcome
    ensure_writable_dir(dest_dir, sources[0])
    # Sidecars come through the single-file client (small files; one command each).
    sidecar_transport = CommandTransport(settings.command) if settings.command else None
    started = time.monotonic()
    expected: dict[str, str | None] = {}
    pending: list[Source] = []
    for source in sources:
        try:
            if source.checksum or not settings.checksum_sidecar:
                expected[source.key] = source.checksum
            elif sidecar_transport is None:
                raise TransferFailed("checksum_sidecar with batch_command needs FetchSettings.command to read "
                                     "the sidecars", retryable=False, field="command")
            else:
                expected[source.key] = expected_checksum(source, sidecar_transport, settings)
        except TransferFailed as exc:
            outcome.failures[source.key] = FetchError(source, exc.reason, field=exc.field, attempts=1)
            continue
        final = dest_dir / source.filename
        digests = verified_existing(final, source, expected[source.key], log) if final.exists() else None
        if digests is not None:
            outcome.results[source.key] = FetchResult(
                source=source, path=final, bytes=final.stat().st_size, seconds=0.0, sha256=digests["sha256"],
                attempts=0, skipped=True, transport="command-batch", verified=expected[source.key])
        else:
            pending.append(source)
    if pending:
        log.info("recalling %d file(s) in one %s command (%d already complete)",
                 len(pending), settings.batch_command[0], len(sources) - len(pending))
    errors: dict[str, list[str]] = {s.key: [] for s in pending}
    attempt = 0
    while pending:
        attempt += 1
        if attempt > 1:
            delay = retry_delay(attempt - 1, None, settings)
            log.warning("%d file(s) of the batch missing or wrong after attempt %d/%d (%s); recalling them "
                        "again in %.2f s", len(pending), attempt - 1, settings.max_attempts,
                        ", ".join(s.key for s in pending), delay)
            time.sleep(delay)
        outcome.commands += 1
        pending = _one_batch(pending, dest_dir, settings, expected, errors, attempt, started, outcome, log)
        if attempt >= settings.max_attempts:
            for source in pending:
                outcome.failures[source.key] = FetchError(
                    source, "; ".join(errors[source.key][-2:]) or "not recalled", attempts=attempt)
            break
    return outcome


def _one_batch(
    pending: list[Source], dest_dir: Path, settings: FetchSettings, expected: dict[str, str | None],
    errors: dict[str, list[str]], attempt: int, started: float, outcome: BatchOutcome, log: logging.Logger,
) -> list[Source]:
    """Run one batch command for ``pending``; place the good files; return those to retry."""
    assert settings.batch_command is not None
    staging = Path(tempfile.mkdtemp(prefix=".recall-", dir=dest_dir))
    try:
        _check_options(settings.batch_command, pending, str(staging))
        argv = build_batch_argv(settings.batch_command, [s.url for s in pending], str(staging))
        try:
            proc = run_client(argv, settings)
            status, why = proc.returncode, stderr_tail(proc)
        except TransferFailed as exc:
            if not exc.retryable:
                for source in pending:
                    outcome.failures[source.key] = FetchError(source, exc.reason, field=exc.field, attempts=attempt)
                return []
            status, why = -1, exc.reason
        permanent = status in settings.command_permanent_exit_codes
        retry: list[Source] = []
        for source in pending:
            if status != 0 and expected[source.key] is None and source.size is None:
                # The client failed: a file it wrote may be the one it died in, and without a
                # checksum or size nothing can tell, so it is recalled again.
                problem = f"{redact_url(source.url)} cannot be verified after the client failed"
            else:
                problem = _place(source, staging, dest_dir, settings, expected[source.key], attempt, started,
                                 outcome, log)
            if problem is None:
                continue
            if status != 0:
                problem += f" ({argv[0]} exited with status {status}: {why})"
            errors[source.key].append(problem)
            if permanent:
                outcome.failures[source.key] = FetchError(source, problem, field="url", attempts=attempt)
            else:
                retry.append(source)
        return retry
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _place(
    source: Source, staging: Path, dest_dir: Path, settings: FetchSettings, expected: str | None,
    attempt: int, started: float, outcome: BatchOutcome, log: logging.Logger,
) -> str | None:
    """Verify one recalled file and rename it into place; return the problem, or None when placed."""
    staged = staging / PurePosixPath(source.url).name
    if not staged.is_file():
        return f"{redact_url(source.url)} was not recalled"
    size = staged.stat().st_size
    if source.size is not None and size != source.size:
        return f"size mismatch: got {size} bytes, the source's size field says {source.size}"
    algorithms = frozenset({parse_checksum(expected)[0]}) if expected else frozenset()
    digests = file_digests(staged, algorithms)
    problem = checksum_problem(expected, digests)
    if problem:
        return problem
    final = dest_dir / source.filename
    if settings.fsync:
        fsync_file(staged)
    os.replace(staged, final)  # same filesystem: the staging folder is inside dest_dir
    if settings.fsync:
        fsync_dir(dest_dir)
    outcome.results[source.key] = FetchResult(
        source=source, path=final, bytes=size, seconds=time.monotonic() - started, sha256=digests["sha256"],
        attempts=attempt, skipped=False, transport="command-batch", verified=expected)
    log.info("%s: recalled %s -> %s (%d bytes, batch attempt %d)", source.key, redact_url(source.url), final,
             size, attempt)
    return None
