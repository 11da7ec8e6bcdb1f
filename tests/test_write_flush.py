"""WriteBehind: the file ends complete and synced; a failed background flush is not lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpc_workflows.write.flush import WriteBehind


def test_background_flushes_then_final_fsync(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    chunk = os.urandom(1 << 16)
    with open(path, "wb") as writer, WriteBehind(path, every=1 << 17) as flusher:
        for _ in range(16):
            writer.write(chunk)
            writer.flush()
            flusher.wrote(len(chunk))
        writer.close()
        flusher.finish()
        assert flusher.background_flushes >= 1
    assert path.read_bytes() == chunk * 16
    flusher.finish()  # idempotent once closed


def test_error_of_background_flush_is_raised_by_finish(tmp_path: Path) -> None:
    # fdatasync on a FIFO fails with EINVAL: a real error from the kernel, no mock.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    flusher = WriteBehind(fifo, every=1)
    flusher.wrote(1)
    with pytest.raises(OSError, match="in the background failed"):
        flusher.finish()
    assert flusher._fd is None
