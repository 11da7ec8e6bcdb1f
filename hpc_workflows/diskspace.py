"""Free space where outputs and scratch are written, and an honest "disk full" error.

A full filesystem shows up in many disguises: ``ENOSPC`` or ``EDQUOT`` from a plain write,
``Permission denied`` or ``NetCDF: HDF error`` from netCDF-C (which turns ``ENOSPC`` into
``EACCES``).  Retrying cannot help, and the disguises send users looking for the wrong
problem, so writers check free space before they start and, when a write fails, look again
and raise `NoSpaceLeft` ("no space left on <filesystem>: N free, about M needed").

Plain Python; no Dagster.  `NoSpaceLeft` is also a ``ValueError`` so that the pipeline's ops,
which fail a step once (no retries) on ValueError, treat it as final.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["NoSpaceLeft", "check_space", "explain_write_failure", "free_space", "mount_point"]

#: Below this many free bytes a filesystem counts as full after a failed write: HDF5 and
#: netCDF-C write in chunks of up to a few MiB, so a write can fail with more than 0 left.
FULL_BELOW = 4 << 20
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class NoSpaceLeft(OSError, ValueError):
    """A write cannot succeed for lack of space (or quota) on a filesystem.

    Attributes
    ----------
    path : Path
        Where the write was going.
    filesystem : str
        Mount point of the filesystem holding ``path``.
    free : int
        Bytes available to this user there.
    needed : int or None
        Bytes the write needed, about (None when unknown).
    """

    def __init__(self, path: Path, filesystem: str, free: int, needed: int | None, what: str = "") -> None:
        self.path = Path(path)
        self.filesystem = filesystem
        self.free = free
        self.needed = needed
        self.what = what
        need = f", about {_human(needed)} needed" if needed is not None else ""
        doing = f" while writing {what or path}"
        message = (
            f"no space left on {filesystem}: {_human(free)} free{need}{doing}; free space or quota "
            "there, or choose another folder (output.directory / output.workdir)"
        )
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self):
        # Errors cross process boundaries (Dask workers, Dagster subprocesses).
        return (NoSpaceLeft, (self.path, self.filesystem, self.free, self.needed, self.what))


def _human(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: str | os.PathLike[str]) -> str:
    """The mount point of the filesystem holding ``path`` (or its nearest existing parent)."""
    probe = _existing(Path(path))
    while not os.path.ismount(probe) and probe != probe.parent:
        probe = probe.parent
    return str(probe)


def free_space(path: str | os.PathLike[str]) -> int:
    """Bytes this (unprivileged) user may still write on the filesystem holding ``path``.

    ``f_bavail`` excludes blocks reserved for root; per-user quotas are not visible here and
    show up as ``EDQUOT`` on write instead (handled by `explain_write_failure`).
    """
    st = os.statvfs(_existing(Path(path)))
    return st.f_bavail * st.f_frsize


def check_space(path: str | os.PathLike[str], needed: int | None, what: str = "") -> None:
    """Raise `NoSpaceLeft` before a write of about ``needed`` bytes under ``path`` that cannot fit.

    Parameters
    ----------
    path : path-like
        File or folder about to be written.
    needed : int or None
        Bytes the write will need (None or 0: nothing to check).
    what : str
        What is being written, for the message.
    """
    if not needed or needed <= 0:
        return
    free = free_space(path)
    if free < needed:
        raise NoSpaceLeft(Path(path), mount_point(path), free, needed, what)


def explain_write_failure(
    exc: BaseException, path: str | os.PathLike[str], needed: int | None = None, what: str = ""
) -> NoSpaceLeft | None:
    """After a failed write to ``path``: a `NoSpaceLeft` when lack of space is the likely cause.

    Call it before removing the partial file (which frees the space again).  True when the
    error is ``ENOSPC``/``EDQUOT``, or when whatever the error says (``EACCES``, an HDF error)
    the filesystem now has less than `FULL_BELOW` bytes free.

    Returns
    -------
    NoSpaceLeft or None
        The error to raise instead (``raise ... from exc``), or None if space is not the problem.
    """
    try:
        free = free_space(path)
        where = mount_point(path)
    except OSError:
        return None
    full = isinstance(exc, OSError) and exc.errno in _SPACE_ERRNOS
    if full or free < FULL_BELOW:
        return NoSpaceLeft(Path(path), where, free, needed, what)
    return None
