"""Write-behind: put a file's data on disk while the rest of it is still being written.

An atomic write ends with ``fsync`` before the rename, so that a crash can never leave a
renamed but empty or torn file. Done only at the end, that fsync waits for the whole file:
0.11 s for a 62 MB output on the development machine, 15 % of the time it takes to read the
1 GB input. :class:`WriteBehind` starts an ``fdatasync`` on a background thread each time
another ``every`` bytes have been written, so the closing ``fsync`` waits only for the tail.

An error of a background flush (e.g. EIO, ENOSPC) is raised by :meth:`WriteBehind.finish`:
Linux reports a writeback error once per file descriptor, so it would otherwise be lost.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["WriteBehind"]


class WriteBehind:
    """Flush ``path`` in the background while another writer (e.g. HDF5) appends to it.

    Parameters
    ----------
    path
        The file being written (it must exist).
    every
        Bytes written between background flushes.

    Use :meth:`wrote` after each write and :meth:`finish` once the writer has closed the
    file; as a context manager, leaving the block on an error waits for a running flush and
    closes the descriptor without the final fsync.
    """

    def __init__(self, path: str | os.PathLike[str], every: int = 16 << 20):
        self.path = Path(path)
        self.every = int(every)
        self._fd: int | None = os.open(self.path, os.O_RDWR)
        self._since = 0
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None
        self._lock = threading.Lock()
        #: Background flushes started so far.
        self.background_flushes = 0

    def wrote(self, nbytes: int) -> None:
        """Record ``nbytes`` written; start a background flush if ``every`` has been reached
        and none is running (thread-safe)."""
        with self._lock:
            self._since += int(nbytes)
            if self._since < self.every or self._fd is None:
                return
            if self._thread is not None and self._thread.is_alive():
                return
            self._since = 0
            self.background_flushes += 1
            self._thread = threading.Thread(target=self._flush, args=(self._fd,),
                                            name="write-behind", daemon=True)
            self._thread.start()

    def _flush(self, fd: int) -> None:
        try:
            os.fdatasync(fd)
        except OSError as exc:  # reported by finish()
            self._error = exc

    def _join(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise OSError(error.errno, f"flushing {str(self.path)!r} in the background "
                                       f"failed: {error.strerror}") from error

    def finish(self) -> None:
        """Wait for a running flush, fsync the file (data and metadata) and close."""
        try:
            self._join()
            if self._fd is not None:
                os.fsync(self._fd)
        finally:
            self.close()

    def close(self) -> None:
        """Close the descriptor without flushing (after waiting for a running flush)."""
        thread = self._thread
        if thread is not None:
            thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
