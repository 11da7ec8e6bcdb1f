"""Writing a ``.part`` file while hashing it, so a download is read from the network once."""

from __future__ import annotations

import os
from pathlib import Path

from hpc_workflows.fetch.verify import new_hashers, update_from_file


class PartWriter:
    """Append to ``part`` from ``offset``, feeding every byte to the requested hashers.

    When resuming (``offset > 0``) the kept prefix is hashed from disk first, and anything
    beyond ``offset`` is cut off, so the digests always describe the whole file.
    """

    def __init__(self, part: Path, offset: int, algorithms: frozenset[str]) -> None:
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

    def write(self, chunk: bytes | memoryview) -> None:
        """Write one chunk and hash it."""
        self._fh.write(chunk)
        for h in self.hashers.values():
            h.update(chunk)
        self.written += len(chunk)

    @property
    def size(self) -> int:
        """Bytes in the file so far (kept prefix + written)."""
        return self.offset + self.written

    def digests(self) -> dict[str, str]:
        """Hex digests of the whole file so far."""
        return {name: h.hexdigest() for name, h in self.hashers.items()}

    def close(self) -> None:
        """Flush and close (data reaches disk on the fsync before rename in `fetch`)."""
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
