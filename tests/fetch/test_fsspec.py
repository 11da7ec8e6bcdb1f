"""The optional fsspec transport, on fsspec's built-in in-memory filesystem."""

from __future__ import annotations

import hashlib
import os

import fsspec
import pytest

from hpc_workflows.fetch import FetchSettings, Source, fetch


@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    yield fs
    fs.rm("/bench", recursive=True) if fs.exists("/bench") else None


def test_memory_url_is_fetched_verified_and_resumed(memfs, tmp_path):
    data = os.urandom(300_000)
    memfs.pipe("/bench/a.bin", data)
    src = Source(key="k", url="memory://bench/a.bin", checksum="sha256:" + hashlib.sha256(data).hexdigest())
    (tmp_path / "a.bin.part").write_bytes(data[:1000])
    result = fetch(src, tmp_path, FetchSettings())
    assert result.transport == "fsspec" and result.resumed_from == 1000
    assert result.path.read_bytes() == data
    assert fetch(src, tmp_path, FetchSettings()).skipped
