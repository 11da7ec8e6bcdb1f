"""`fetch`: download one source atomically (``.part`` then rename), verified and resumable.

A file only ever appears under its final name after its size and checksum were checked, so a
re-run can trust (and re-verify) what it finds and skip it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hpc_workflows.diskspace import NoSpaceLeft, check_space, explain_write_failure
from hpc_workflows.fetch.errors import FetchError, TransferFailed, redact_url
from hpc_workflows.fetch.partfile import fsync_dir, fsync_file
from hpc_workflows.fetch.retry import retry_delay
from hpc_workflows.fetch.settings import FetchSettings
from hpc_workflows.fetch.source import Source
from hpc_workflows.fetch.base import Transport
from hpc_workflows.fetch.transport import choose_transport
from hpc_workflows.fetch.verify import file_digests, parse_checksum, parse_sidecar

logger = logging.getLogger("hpc_workflows.fetch")

PART_SUFFIX = ".part"


@dataclass
class FetchResult:
    """What happened to one source.

    Attributes
    ----------
    source : Source
    path : Path
        Final local file.
    bytes : int
        File size.
    seconds : float
        Wall time of the fetch (including retries and verification).
    sha256 : str
        Hex digest of the final file.
    attempts : int
        Transport attempts made (0 when skipped).
    skipped : bool
        True when a complete, verified file was already there.
    transport : str
        Transport used.
    resumed_from : int
        Bytes kept from a previous partial download.
    verified : str or None
        The checksum that was verified (``"sha256:..."``), None when none was available.
    """

    source: Source
    path: Path
    bytes: int
    seconds: float
    sha256: str
    attempts: int
    skipped: bool
    transport: str = ""
    resumed_from: int = 0
    verified: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        """Throughput in MB/s (10**6 bytes), 0 for skipped or instant fetches."""
        if self.skipped or self.seconds <= 0:
            return 0.0
        return self.bytes / 1e6 / self.seconds

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster output metadata and logs (no credentials)."""
        return {
            "key": self.source.key,
            "source": redact_url(self.source.url),
            "path": str(self.path),
            "bytes": int(self.bytes),
            "seconds": round(float(self.seconds), 3),
            "mb_per_s": round(self.mb_per_s, 2),
            "sha256": self.sha256,
            "verified": self.verified or "",
            "attempts": int(self.attempts),
            "skipped": bool(self.skipped),
            "resumed_from": int(self.resumed_from),
            "transport": self.transport,
            "retried_errors": "; ".join(self.errors),
        }


def part_path(final: Path) -> Path:
    """The temporary name a download is written under before it is verified."""
    return final.with_name(final.name + PART_SUFFIX)


@contextmanager
def exclusive(final: Path, source: Source, log: logging.Logger) -> Iterator[None]:
    """Hold an exclusive lock for ``final`` so two processes (a retried step whose first try
    still runs, two runs sharing a folder) never write the same ``.part`` at once.

    The lock file stays behind on purpose: removing it would let a third process lock a new
    file while a waiter still holds the old one.
    """
    lock_path = final.with_name(f".{final.name}.fetch-lock")
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another process is fetching %s; waiting for it to finish", source.key, final)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock, also if this process dies


def ensure_writable_dir(dest_dir: Path, source: Source) -> Path:
    """Create ``dest_dir`` if needed and prove we can write there (a real probe: root ignores modes)."""
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=dest_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise FetchError(
            source,
            f"destination folder {dest_dir} is not writable ({exc.strerror or exc}); choose a folder "
            "you can write to",
            field="dest_dir",
        ) from None
    return dest_dir


def expected_checksum(source: Source, transport: Transport, settings: FetchSettings) -> str | None:
    """The checksum to verify against: the source's own, else a configured sidecar, else None."""
    if source.checksum:
        return source.checksum
    if not settings.checksum_sidecar:
        return None
    url = f"{source.url}.{settings.checksum_sidecar}"
    text = transport.read_text(url, settings)
    try:
        return parse_sidecar(text, settings.checksum_sidecar, source.filename)
    except ValueError as exc:
        raise TransferFailed(f"sidecar {redact_url(url)}: {exc}", retryable=False, field="checksum_sidecar") from None


class _MismatchPolicy:
    """What to do after a download disagrees with its expected checksum.

    Downloading the same bytes again and again cannot fix a stale sidecar or a wrong manifest
    checksum (for the command transport each try is a tape recall), so: re-read the sidecar
    once; download at most twice for the same expected value; then fail, saying whether the
    file, the sidecar, or neither changed between attempts.
    """

    def __init__(self, source: Source, from_sidecar: bool) -> None:
        self.source = source
        self.from_sidecar = from_sidecar
        self.sidecar_reread = False
        self.expected_seen: list[str] = []
        self.got: dict[str, list[str]] = {}

    def record(self, expected: str, digests: dict[str, str]) -> None:
        algorithm, _ = parse_checksum(expected)
        if expected not in self.expected_seen:
            self.expected_seen.append(expected)
        self.got.setdefault(expected, []).append(f"{algorithm}:{digests.get(algorithm)}")

    def should_reread_sidecar(self) -> bool:
        if self.from_sidecar and not self.sidecar_reread:
            self.sidecar_reread = True
            return True
        return False

    def give_up(self, expected: str) -> str | None:
        """The final error when ``expected`` has had its two downloads, else None."""
        got = self.got.get(expected, [])
        if len(got) < 2:
            return None
        origin = "its sidecar" if self.from_sidecar else "the source's checksum"
        if got[-1] == got[-2]:
            changed = (
                f"the file did not change between downloads (both {got[-1]})"
                + (" and neither did the sidecar" if self.from_sidecar and len(self.expected_seen) == 1 else "")
                + f": {origin} ({expected}) is wrong or stale, or the file is corrupt at the origin"
            )
        else:
            changed = (
                f"the file changed between downloads ({got[-2]}, then {got[-1]}) while {origin} "
                f"stayed {expected}: it is being rewritten at the origin or corrupted in transit"
            )
        if len(self.expected_seen) > 1:
            changed += f"; the sidecar itself changed from {self.expected_seen[0]} to {self.expected_seen[-1]}"
        return f"checksum mismatch after {sum(len(v) for v in self.got.values())} downloads: {changed}"


def _check_space(part: Path, needed: int) -> None:
    """Refuse (not retry) a download that cannot fit on the destination filesystem."""
    try:
        check_space(part.parent, needed, str(part))
    except NoSpaceLeft as exc:
        raise TransferFailed(str(exc), retryable=False, field="dest_dir") from None


def checksum_problem(expected: str | None, digests: dict[str, str]) -> str | None:
    """The mismatch message when ``digests`` disagree with ``expected`` (``"alg:hex"``), else None."""
    if expected is None:
        return None
    algorithm, digest = parse_checksum(expected)
    if digests.get(algorithm) != digest:
        return f"checksum mismatch: expected {algorithm}:{digest}, got {algorithm}:{digests.get(algorithm)}"
    return None


def verified_existing(final: Path, source: Source, expected: str | None, log: logging.Logger) -> dict[str, str] | None:
    """Digests of an already-present final file when it is complete and correct, else None (logged)."""
    size = final.stat().st_size
    if source.size is not None and size != source.size:
        log.warning("%s: existing %s has %d bytes, expected %d; fetching again", source.key, final, size, source.size)
        return None
    algorithms = frozenset({parse_checksum(expected)[0]}) if expected else frozenset()
    digests = file_digests(final, algorithms)
    problem = checksum_problem(expected, digests)
    if problem:
        log.warning("%s: existing %s fails verification (%s); fetching again", source.key, final, problem)
        return None
    return digests


def fetch(
    source: Source,
    dest_dir: Path,
    settings: FetchSettings | None = None,
    *,
    log: logging.Logger | None = None,
) -> FetchResult:
    """Fetch ``source`` into ``dest_dir`` atomically, verified, with retries and resume.

    Downloads to ``<name>.part``, checks the size (source size / Content-Length) and the
    checksum (source checksum or configured sidecar), fsyncs and renames to ``<name>``.  A
    complete, verified file already present is skipped (and logged).  A partial ``.part``
    left by an earlier attempt or run is resumed where the transport supports it.

    Parameters
    ----------
    source : Source
        What to fetch.
    dest_dir : Path
        Destination folder (created if missing).
    settings : FetchSettings, optional
        Transport, retry, timeout and verification settings (defaults if None).
    log : logging.Logger, optional
        Where to log (e.g. a Dagster context logger); default ``hpc_workflows.fetch``.

    Returns
    -------
    FetchResult

    Raises
    ------
    FetchError
        Naming the source, the field at fault where there is one, and the reason.
    """
    settings = settings or FetchSettings()
    log = log or logger
    started = time.monotonic()
    transport = choose_transport(source, settings)
    dest_dir = ensure_writable_dir(Path(dest_dir), source)
    final = dest_dir / source.filename
    with exclusive(final, source, log):
        return _fetch_locked(source, final, transport, settings, log, started)


def _fetch_locked(
    source: Source, final: Path, transport: Transport, settings: FetchSettings,
    log: logging.Logger, started: float,
) -> FetchResult:
    dest_dir = final.parent
    part = part_path(final)
    errors: list[str] = []
    attempts = 0
    expected: str | None = None
    have_expected = False
    checked_existing = False
    resumed_from = 0
    mismatches = _MismatchPolicy(source, from_sidecar=not source.checksum and bool(settings.checksum_sidecar))

    while True:
        attempts += 1
        try:
            if not have_expected:
                expected = expected_checksum(source, transport, settings)
                have_expected = True
            if not checked_existing:
                checked_existing = True
                digests = verified_existing(final, source, expected, log) if final.exists() else None
                if digests is not None:
                    log.info("%s: %s already complete and verified; skipping", source.key, final)
                    return FetchResult(
                        source=source, path=final, bytes=final.stat().st_size,
                        seconds=time.monotonic() - started, sha256=digests["sha256"], attempts=0,
                        skipped=True, transport=transport.name, verified=expected,
                    )
            offset = 0
            if part.exists():
                if transport.supports_resume and settings.resume:
                    offset = part.stat().st_size
                else:
                    part.unlink()
            algorithms = frozenset({parse_checksum(expected)[0]}) if expected else frozenset()
            if source.size is not None:
                _check_space(part, source.size - offset)
            try:
                transfer = transport.retrieve(source, part, offset, algorithms, settings)
            except OSError as exc:
                # Local I/O (disk full, quota, permissions changed under us): retrying the
                # network cannot fix it, so say where the problem is.
                needed = source.size - offset if source.size is not None else None
                full = exc if isinstance(exc, NoSpaceLeft) else explain_write_failure(exc, part, needed)
                raise TransferFailed(
                    str(full) if full else f"cannot write {part}: {exc.strerror or exc}; fix the destination",
                    retryable=False,
                    field="dest_dir",
                ) from None
            resumed_from = max(resumed_from, transfer.resumed_from)
            size = part.stat().st_size
            if transfer.total_size is not None and size != transfer.total_size:
                if size > transfer.total_size:
                    part.unlink(missing_ok=True)
                raise TransferFailed(
                    f"incomplete transfer: got {size} of {transfer.total_size} bytes", retryable=True
                )
            if source.size is not None and size != source.size:
                part.unlink(missing_ok=True)
                raise TransferFailed(
                    f"size mismatch: got {size} bytes, the source's size field says {source.size}",
                    retryable=True,
                    field="size",
                )
            digests = transfer.digests if transfer.digests is not None else file_digests(part, algorithms)
            problem = checksum_problem(expected, digests)
            if problem:
                # Corrupt in transit or at the origin: never keep it, never resume from it.
                part.unlink(missing_ok=True)
                assert expected is not None
                mismatches.record(expected, digests)
                if mismatches.should_reread_sidecar():
                    fresh = expected_checksum(source, transport, settings)
                    if fresh != expected:
                        log.warning("%s: %s; the sidecar changed from %s to %s, downloading again",
                                    source.key, problem, expected, fresh)
                        expected = fresh
                        continue
                final_error = mismatches.give_up(expected)
                if final_error:
                    raise TransferFailed(final_error, retryable=False, field="checksum")
                errors.append(problem)
                log.warning("%s: %s; downloading once more", source.key, problem)
                continue
            if settings.fsync:
                fsync_file(part)
            os.replace(part, final)
            if settings.fsync:
                fsync_dir(dest_dir)
            seconds = time.monotonic() - started
            result = FetchResult(
                source=source, path=final, bytes=size, seconds=seconds, sha256=digests["sha256"],
                attempts=attempts, skipped=False, transport=transport.name,
                resumed_from=resumed_from, verified=expected, errors=errors,
            )
            log.info(
                "%s: fetched %s -> %s (%d bytes, %.2f s, %.1f MB/s, %d attempt(s)%s)",
                source.key, redact_url(source.url), final, size, seconds, result.mb_per_s, attempts,
                f", resumed from byte {resumed_from}" if resumed_from else "",
            )
            return result
        except TransferFailed as exc:
            errors.append(exc.reason)
            if not exc.retryable or attempts >= settings.max_attempts:
                raise FetchError(source, exc.reason, field=exc.field, attempts=attempts) from None
            delay = retry_delay(attempts, exc.retry_after, settings)
            log.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.2f s",
                source.key, attempts, settings.max_attempts, exc.reason, delay,
            )
            time.sleep(delay)
