"""A per-host cap on concurrent connections, shared by all threads of this process."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def host_semaphore(host: str, cap: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore limiting connections to ``host`` to ``cap``."""
    with _lock:
        sem = _slots.get((host, cap))
        if sem is None:
            sem = _slots[(host, cap)] = threading.BoundedSemaphore(cap)
        return sem


@contextmanager
def host_slot(host: str, cap: int) -> Iterator[None]:
    """Hold one of ``cap`` connection slots for ``host`` while the block runs."""
    sem = host_semaphore(host, cap)
    with sem:
        yield
