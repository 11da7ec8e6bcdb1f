"""Folders and files only their owner can read: where the UI keeps its secret and its socket.

On a shared node every other account can read files of mode 0644 and connect to any
socket it can reach, so the UI's token and socket live in folders of mode 0700 that belong
to the current user, checked rather than trusted (a folder made earlier with a loose umask,
or planted by someone else, is refused or tightened).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["UnsafePathError", "private_dir", "write_private_file"]


class UnsafePathError(RuntimeError):
    """A path that would let another user read or replace what we put there."""


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or check an existing one.

    Parameters
    ----------
    path
        Folder to create or reuse.

    Returns
    -------
    pathlib.Path
        The absolute folder, owned by the current user, mode 0700.

    Raises
    ------
    UnsafePathError
        If it is a symlink, not a folder, or belongs to another user.
    """
    folder = Path(path).expanduser().absolute()
    old = os.umask(0o077)  # parents we create are private too
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(old)
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{folder} is not a plain folder: remove it or choose another folder")
    if st.st_uid != os.geteuid():
        raise UnsafePathError(f"{folder} belongs to uid {st.st_uid}, not to you: choose another folder")
    if stat.S_IMODE(st.st_mode) != 0o700:
        # Ours but readable by others (made by hand or with a loose umask): tighten it.
        os.chmod(folder, 0o700)
    return folder


def write_private_file(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write ``text`` to ``path`` with mode 0600, inside a :func:`private_dir`.

    The file is created 0600 from the start (never briefly world-readable) and renamed into
    place, so a reader sees the old content or the new one, never a part.

    Parameters
    ----------
    path
        Destination file; its folder is made private first.
    text
        Content.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    dest = Path(path)
    private_dir(dest.parent)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest
