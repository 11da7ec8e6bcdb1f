"""Unpacking: tar / tar.gz / .gz / .zip into a per-source folder, members chosen by glob patterns.

Every file is extracted to ``<name>.part`` and renamed, so an interrupted unpack never leaves a
truncated member that a re-run would take as complete; a re-run skips members already there.

What one archive may write is capped (`UnpackLimits`) while streaming, so a small hostile or
corrupt archive (a "gzip bomb") cannot fill a shared scratch filesystem.  Only regular files
are extracted; links, devices and FIFOs are skipped and logged.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Callable, Iterable

from hpc_workflows.diskspace import NoSpaceLeft, explain_write_failure

if TYPE_CHECKING:  # pragma: no cover
    import tarfile

# gzip, tarfile and zipfile are imported where used: `hpc_workflows.fetch` imports this module,
# and a process that only downloads should not pay for them at start-up.

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"

logger = logging.getLogger("hpc_workflows.fetch.unpack")

#: Default cap on bytes written per byte of archive.  Compressed netCDF/GRIB rarely expands
#: more than ~20x; a gzip of zeros expands ~1000x.
DEFAULT_MAX_RATIO = 200.0
#: Default cap on bytes written from one archive (50 GB).
DEFAULT_MAX_BYTES = 50 * 10**9


class UnpackLimitExceeded(ValueError):
    """An archive expanded beyond `UnpackLimits`; the message names archive, member and setting."""


@dataclass(frozen=True)
class UnpackLimits:
    """How much unpacking one archive may write.

    Parameters
    ----------
    max_ratio : float
        Bytes written per byte of archive file (``source.unpack_max_ratio``).
    max_bytes : int
        Bytes written in total (``source.unpack_max_bytes``).
    """

    max_ratio: float = DEFAULT_MAX_RATIO
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.max_ratio, (int, float)) or self.max_ratio < 1:
            raise ValueError(f"source.unpack_max_ratio must be a number >= 1, got {self.max_ratio!r}")
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise ValueError(f"source.unpack_max_bytes must be a positive integer, got {self.max_bytes!r}")


class _Budget:
    """Bytes one archive may still write: the smaller of its two limits, counted while streaming."""

    def __init__(self, archive: Path, limits: UnpackLimits) -> None:
        self.archive = archive
        by_ratio = int(limits.max_ratio * max(archive.stat().st_size, 1))
        if by_ratio <= limits.max_bytes:
            self.limit, self.setting = by_ratio, f"source.unpack_max_ratio={limits.max_ratio:g}"
        else:
            self.limit, self.setting = limits.max_bytes, f"source.unpack_max_bytes={limits.max_bytes}"
        self.written = 0

    def spend(self, n: int, member: str) -> None:
        self.written += n
        if self.written > self.limit:
            raise UnpackLimitExceeded(
                f"archive {self.archive} member {member!r} expands beyond {self.limit} bytes "
                f"({self.setting}, archive is {self.archive.stat().st_size} bytes): refusing to "
                f"unpack more. If the archive is genuine, raise {self.setting.split('=')[0]}"
            )


def _selected(name: str, members: list[str] | None) -> bool:
    """True when ``name`` (or its base name) matches one of the glob patterns (all when None)."""
    if not members:
        return True
    base = PurePosixPath(name).name
    return any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(base, pat) for pat in members)


def _safe_target(workdir: Path, name: str, archive: Path) -> Path:
    """Where a member goes; refuse absolute paths and '..' (a hostile archive must not escape)."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"archive {archive} member {name!r} would be written outside {workdir}; refusing it")
    return workdir.joinpath(*rel.parts)


def _write_atomic(
    target: Path, opener: Callable[[], IO[bytes]], gunzip: bool, budget: _Budget, member: str
) -> Path:
    """Stream one member into ``target`` (gunzipped when asked) via ``.part`` + rename."""
    if gunzip:
        target = target.with_suffix("")  # "x.nc.gz" -> "x.nc"
    if target.exists():
        # Extracted by an earlier, interrupted unpack: it still counts against the budget.
        budget.spend(target.stat().st_size, member)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with opener() as raw:
            import gzip

            src: IO[bytes] = gzip.GzipFile(fileobj=raw) if gunzip else raw
            with open(part, "wb") as out:
                # Not shutil.copyfileobj: the budget must be checked before each write.
                while block := src.read(_CHUNK):
                    budget.spend(len(block), member)
                    out.write(block)
    except BaseException as exc:
        # Look at the space before removing the partial member (that frees it again).
        full = explain_write_failure(exc, part, what=f"member {member!r} of {budget.archive}") \
            if isinstance(exc, OSError) else None
        part.unlink(missing_ok=True)
        if full is not None:
            raise full from exc
        raise
    os.replace(part, target)
    return target


def unpack(
    path: Path,
    workdir: Path,
    members: list[str] | None = None,
    limits: UnpackLimits | None = None,
    *,
    log: logging.Logger | None = None,
) -> list[Path]:
    """Unpack ``path`` into ``workdir``, keeping members that match ``members`` (glob patterns).

    tar (any compression), zip and single-file ``.gz`` archives are supported; gzip-compressed
    members (``*.gz``) are decompressed on the way out.  A file that is not an archive is
    returned as is (when it matches ``members``).

    Parameters
    ----------
    path : Path
        Downloaded file.
    workdir : Path
        Per-source working folder (created if missing).
    members : list of str, optional
        Glob patterns matched against each member's path and base name, e.g.
        ``["*rainrate_composite*", "*qualityproduct_composite*"]``; None keeps every file.
    limits : UnpackLimits, optional
        Caps on what the archive may write (default ratio 200, 50 GB), enforced while streaming.
    log : logging.Logger, optional
        Where skipped members (links, devices) are reported; default ``hpc_workflows.fetch.unpack``.

    Returns
    -------
    list of Path
        The extracted (and gunzipped) files, sorted.

    Raises
    ------
    ValueError
        If the archive is corrupt or has unsafe member names (message names the file).
    UnpackLimitExceeded
        If it expands beyond ``limits`` (a ValueError naming archive, member and setting); the
        partial member is removed.
    """
    import gzip
    import tarfile
    import zipfile

    path = Path(path)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    budget = _Budget(path, limits or UnpackLimits())
    log = log or logger
    try:
        if tarfile.is_tarfile(path):
            out = _unpack_tar(path, workdir, members, budget, log)
        elif zipfile.is_zipfile(path):
            out = _unpack_zip(path, workdir, members, budget, log)
        elif _is_gzip(path):
            if not _selected(path.name, members) and not _selected(path.with_suffix("").name, members):
                out = []
            else:
                out = [_write_atomic(workdir / path.name, lambda: open(path, "rb"), True, budget, path.name)]
        else:
            out = [path] if _selected(path.name, members) else []
    except NoSpaceLeft:
        raise  # an OSError, but the archive is fine: say so, not "corrupt"
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise ValueError(f"cannot unpack {path}: {exc}; the file is corrupt or not an archive") from None
    return sorted(out)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return f"symbolic link to {info.linkname!r}"
    if info.islnk():
        return f"hard link to {info.linkname!r}"
    if info.ischr() or info.isblk():
        return "device file"
    if info.isfifo():
        return "FIFO"
    return "special file"


def _unpack_tar(
    path: Path, workdir: Path, members: list[str] | None, budget: _Budget, log: logging.Logger
) -> list[Path]:
    import tarfile

    out = []
    with tarfile.open(path, "r:*") as tar:
        for info in tar:
            if info.isdir() or not _selected(info.name, members):
                continue
            if not info.isfile():
                # Links could point outside the folder or at another user's file; devices and
                # FIFOs are never data.  Say so: a missing member must not be a mystery.
                log.warning("archive %s: skipping member %r (%s); only regular files are extracted",
                            path, info.name, _tar_kind(info))
                continue
            target = _safe_target(workdir, info.name, path)
            opener = (lambda i=info: tar.extractfile(i))  # noqa: E731 - bind the loop variable
            out.append(_write_atomic(target, opener, info.name.endswith(".gz"), budget, info.name))
    return out


def _unpack_zip(
    path: Path, workdir: Path, members: list[str] | None, budget: _Budget, log: logging.Logger
) -> list[Path]:
    import zipfile

    out = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir() or not _selected(info.filename, members):
                continue
            mode = info.external_attr >> 16
            # Many writers (Python's zipfile, Windows tools) set no file type: that is a file.
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                log.warning("archive %s: skipping member %r (not a regular file, mode %o); only "
                            "regular files are extracted", path, info.filename, mode)
                continue
            target = _safe_target(workdir, info.filename, path)
            opener = (lambda i=info: zf.open(i))  # noqa: E731
            out.append(_write_atomic(target, opener, info.filename.endswith(".gz"), budget, info.filename))
    return out


def remove_workdir(workdir: Path, keep: Iterable[Path] = ()) -> None:
    """Delete a per-source unpack folder (failure hook), never touching paths in ``keep``.

    Completed downloads and merged outputs live elsewhere; this only removes the temporary
    extract folder so a failed step does not leave gigabytes behind.
    """
    workdir = Path(workdir)
    keep_resolved = {Path(p).resolve() for p in keep}
    if not workdir.is_dir():
        return
    if any(workdir.resolve() == k or workdir.resolve() in k.parents for k in keep_resolved):
        raise ValueError(f"refusing to remove {workdir}: it contains outputs that must be kept")
    shutil.rmtree(workdir, ignore_errors=True)
