"""A per-host cap on concurrent connections.

Within a process a semaphore per host holds the threads back.  Pipeline steps usually run in
separate worker processes, so the cap is also enforced across processes with ``flock`` on
one lock file per slot in a shared folder (node-local by default; a folder on a cluster
filesystem that supports flock extends it across nodes).  A killed process releases its
slot automatically: the kernel drops flock locks with the file descriptor.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import IO, Iterator

_lock = threading.Lock()
_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_POLL_FIRST, _POLL_MAX = 0.01, 0.25


def host_semaphore(host: str, cap: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore limiting connections to ``host`` to ``cap``."""
    with _lock:
        sem = _slots.get((host, cap))
        if sem is None:
            sem = _slots[(host, cap)] = threading.BoundedSemaphore(cap)
        return sem


def default_lock_dir() -> str:
    """Node-local, per-user folder for the cross-process slot files."""
    return os.path.join(tempfile.gettempdir(), f"hpc_workflows-{os.getuid()}", "host-slots")


def _take_file_slot(lock_dir: str, host: str, cap: int) -> IO[str]:
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", host)
    delay = _POLL_FIRST
    while True:
        for i in range(cap):
            fh = open(os.path.join(lock_dir, f"{stem}.{i}.lock"), "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fh
            except BlockingIOError:
                fh.close()
        # All slots busy in other processes: wait a little (growing) and look again.
        time.sleep(delay)
        delay = min(_POLL_MAX, delay * 2)


@contextmanager
def host_slot(host: str, cap: int, lock_dir: str | None = None) -> Iterator[None]:
    """Hold one of ``cap`` connection slots for ``host`` while the block runs.

    Parameters
    ----------
    host : str
        ``"hostname:port"``.
    cap : int
        Slots per host.
    lock_dir : str, optional
        Folder for cross-process slot files; None limits only the threads of this process.
    """
    with host_semaphore(host, cap):
        if lock_dir is None:
            yield
            return
        fh = _take_file_slot(lock_dir, host, cap)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
