"""Unpacking: tar / tar.gz / .gz / .zip into a per-source folder, members chosen by glob patterns.

Every file is extracted to ``<name>.part`` and renamed, so an interrupted unpack never leaves a
truncated member that a re-run would take as complete; a re-run skips members already there.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterable

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


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


def _write_atomic(target: Path, opener: Callable[[], IO[bytes]], gunzip: bool) -> Path:
    """Stream one member into ``target`` (gunzipped when asked) via ``.part`` + rename."""
    if gunzip:
        target = target.with_suffix("")  # "x.nc.gz" -> "x.nc"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    with opener() as raw:
        src: IO[bytes] = gzip.GzipFile(fileobj=raw) if gunzip else raw
        with open(part, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
    os.replace(part, target)
    return target


def unpack(path: Path, workdir: Path, members: list[str] | None = None) -> list[Path]:
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

    Returns
    -------
    list of Path
        The extracted (and gunzipped) files, sorted.

    Raises
    ------
    ValueError
        If the archive is corrupt or has unsafe member names (message names the file).
    """
    path = Path(path)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if tarfile.is_tarfile(path):
            out = _unpack_tar(path, workdir, members)
        elif zipfile.is_zipfile(path):
            out = _unpack_zip(path, workdir, members)
        elif _is_gzip(path):
            if not _selected(path.name, members) and not _selected(path.with_suffix("").name, members):
                out = []
            else:
                out = [_write_atomic(workdir / path.name, lambda: open(path, "rb"), gunzip=True)]
        else:
            out = [path] if _selected(path.name, members) else []
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise ValueError(f"cannot unpack {path}: {exc}; the file is corrupt or not an archive") from None
    return sorted(out)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _unpack_tar(path: Path, workdir: Path, members: list[str] | None) -> list[Path]:
    out = []
    with tarfile.open(path, "r:*") as tar:
        for info in tar:
            if not info.isfile() or not _selected(info.name, members):
                continue
            target = _safe_target(workdir, info.name, path)
            opener = (lambda i=info: tar.extractfile(i))  # noqa: E731 - bind the loop variable
            out.append(_write_atomic(target, opener, gunzip=info.name.endswith(".gz")))
    return out


def _unpack_zip(path: Path, workdir: Path, members: list[str] | None) -> list[Path]:
    out = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir() or not _selected(info.filename, members):
                continue
            target = _safe_target(workdir, info.filename, path)
            opener = (lambda i=info: zf.open(i))  # noqa: E731
            out.append(_write_atomic(target, opener, gunzip=info.filename.endswith(".gz")))
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
