"""Writing a ``.part`` file while hashing it, so a download is read from the network once."""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Callable

from hpc_workflows.fetch.verify import new_hashers, update_from_file

_sync_file_range_func: object = False  # False: not looked up yet; None: unavailable


def _sync_file_range():
    """Linux's sync_file_range(2), to start writing data back while the download goes on, so
    the fsync before the rename has little left to do.  None where unavailable.

    Looked up on first use, in the libc already loaded into this process (ctypes.util's
    find_library would run ldconfig in a subprocess: tens of milliseconds at start-up).
    """
    global _sync_file_range_func
    if _sync_file_range_func is False:
        try:
            import ctypes

            func = ctypes.CDLL(None, use_errno=True).sync_file_range
            func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            func.restype = ctypes.c_int
        except (OSError, AttributeError):
            func = None
        _sync_file_range_func = func
    return _sync_file_range_func


_SYNC_FILE_RANGE_WRITE = 2
_WRITEBACK_STEP = 8 << 20

# Chunks waiting for the hashing thread: bounds the memory held to this many network reads
# (each at most 1 MiB), whatever the file size.
_QUEUE_CHUNKS = 16
# `fill_from` reads into this many reused buffers of this size (2 MiB per download): no new
# buffer per read, so no page faults or zeroing of fresh memory (about 1 CPU-s/GB at 1 MiB
# reads), and a buffer small enough to still be in cache when it is written and hashed.
_POOL_BUFFERS = 8
_POOL_BYTES = 256 << 10


class PartWriter:
    """Append to ``part`` from ``offset``, feeding every byte to the requested hashers.

    When resuming (``offset > 0``) the kept prefix is hashed from disk first, and anything
    beyond ``offset`` is cut off, so the digests always describe the whole file.  Hashing
    runs on a helper thread (hashlib releases the GIL for large buffers), so on a machine
    with a spare core it overlaps the network reads and disk writes instead of adding to them.
    With ``early_writeback`` (used when `fetch` will fsync), every 8 MiB written is handed to
    the kernel for writeback at once, so the fsync before the rename is nearly free (it took
    a third of the time of parallel downloads without this; see benchmarks/fetch_bench.py).
    """

    def __init__(self, part: Path, offset: int, algorithms: frozenset[str], *, early_writeback: bool = True) -> None:
        self.part = Path(part)
        self.hashers = new_hashers(algorithms)
        self.offset = offset
        if offset > 0:
            update_from_file(self.hashers, self.part, offset)
            self._fh = open(self.part, "r+b")
            self._fh.truncate(offset)
            self._fh.seek(offset)
        else:
            self._fh = open(self.part, "wb")
        self.written = 0
        self._flushed = offset
        self._sync = _sync_file_range() if early_writeback else None
        self._digests: dict[str, str] | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._thread = threading.Thread(target=self._hash_loop, name="fetch-hash", daemon=True)
        self._thread.start()

    def _hash_loop(self) -> None:
        hashers = list(self.hashers.values())
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, tuple):  # (pooled buffer, length, pool): give it back after
                buf, length, pool = item
                view = buf[:length]
                for h in hashers:
                    h.update(view)
                view.release()
                pool.put(buf)
                continue
            for h in hashers:
                h.update(item)

    def write(self, chunk: bytes) -> None:
        """Write one chunk (immutable bytes: it is hashed later, on the helper thread)."""
        self._fh.write(chunk)
        self._queue.put(chunk)
        self._wrote(len(chunk))

    def fill_from(self, readinto: Callable[[memoryview], int]) -> None:
        """Write everything ``readinto`` delivers until it returns 0, through reused buffers.

        ``readinto(buffer)`` fills (part of) a writable buffer and returns the byte count, as
        `io.RawIOBase.readinto` does.  Each filled buffer is written, then hashed on the helper
        thread, which hands it back for the next read.
        """
        pool: queue.Queue = queue.Queue()
        for _ in range(_POOL_BUFFERS):
            pool.put(memoryview(bytearray(_POOL_BYTES)))
        while True:
            buf = pool.get()
            length = readinto(buf)
            if not length:
                return
            with buf[:length] as view:
                self._fh.write(view)
            self._queue.put((buf, length, pool))
            self._wrote(length)

    def _wrote(self, length: int) -> None:
        self.written += length
        end = self.offset + self.written
        if self._sync is not None and end - self._flushed >= _WRITEBACK_STEP:
            # Asynchronous: queues the writeback and returns at once.
            self._sync(self._fh.fileno(), self._flushed, end - self._flushed, _SYNC_FILE_RANGE_WRITE)
            self._flushed = end

    def _stop_hashing(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    @property
    def size(self) -> int:
        """Bytes in the file so far (kept prefix + written)."""
        return self.offset + self.written

    def digests(self) -> dict[str, str]:
        """Hex digests of everything written (call after the last write)."""
        if self._digests is None:
            self._stop_hashing()
            self._digests = {name: h.hexdigest() for name, h in self.hashers.items()}
        return self._digests

    def close(self) -> None:
        """Flush and close (data reaches disk on the fsync before rename in `fetch`)."""
        self._stop_hashing()
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk so a rename cannot expose an empty/partial file after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after a rename); ignored where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
