"""A checksum mismatch costs at most one sidecar re-read and one re-download per expected value.

Counted on the real loopback server (requests) and with the stand-in `moo` (tape recalls).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from hpc_workflows.fetch import FetchError, FetchSettings, Source, fetch
from tests.fetch.fault_server import Fault, sha256_hex

FILE = "/radar/20200214.tar"
SIDECAR = FILE + ".sha256"


@pytest.fixture
def payload() -> bytes:
    return os.urandom(200_000)


def test_stale_sidecar_costs_two_downloads_and_two_sidecar_reads(server, payload, tmp_path, fast_settings):
    url = server.add(FILE, payload)
    server.add(SIDECAR, ("f" * 64 + "  20200214.tar\n").encode())
    fast_settings.checksum_sidecar = "sha256"
    fast_settings.retries = 5
    with pytest.raises(FetchError) as info:
        fetch(Source(key="20200214", url=url), tmp_path, fast_settings)
    message = str(info.value)
    assert info.value.field == "checksum"
    assert "did not change between downloads" in message and "neither did the sidecar" in message
    assert "sha256:" + "f" * 64 in message and sha256_hex(payload) in message
    assert [r.path for r in server.requests()] == [SIDECAR, FILE, SIDECAR, FILE]
    assert not list(tmp_path.glob("20200214.tar*"))


def test_file_corrupted_once_in_transit_is_fetched_again(server, payload, tmp_path, fast_settings):
    url = server.add(FILE, payload)
    server.add(SIDECAR, f"{sha256_hex(payload)}  20200214.tar\n".encode())
    server.inject(FILE, Fault("corrupt"))
    fast_settings.checksum_sidecar = "sha256"
    result = fetch(Source(key="20200214", url=url), tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.path for r in server.requests()] == [SIDECAR, FILE, SIDECAR, FILE]


def test_updated_sidecar_is_used_after_one_reread(server, payload, tmp_path, fast_settings, caplog):
    """The first sidecar read sees a stale copy (through a redirect); the re-read the new one."""
    url = server.add(FILE, payload)
    server.add("/stale/20200214.tar.sha256", ("e" * 64 + "\n").encode())
    server.add(SIDECAR, f"{sha256_hex(payload)}  20200214.tar\n".encode())
    server.inject(SIDECAR, Fault("redirect", location="/stale/20200214.tar.sha256"))
    fast_settings.checksum_sidecar = "sha256"
    with caplog.at_level(logging.WARNING, logger="hpc_workflows.fetch"):
        result = fetch(Source(key="20200214", url=url), tmp_path, fast_settings)
    assert result.verified == f"sha256:{sha256_hex(payload)}"
    assert [r.path for r in server.requests() if r.path != "/stale/20200214.tar.sha256"] == [
        SIDECAR, FILE, SIDECAR, FILE]
    assert "the sidecar changed from sha256:" + "e" * 64 in caplog.text


def test_file_changing_between_downloads_is_named(server, payload, tmp_path, fast_settings):
    url = server.add(FILE, payload)
    src = Source(key="20200214", url=url, checksum="sha256:" + "0" * 64)
    server.inject(FILE, Fault("corrupt"))
    with pytest.raises(FetchError) as info:
        fetch(src, tmp_path, fast_settings)
    assert "the file changed between downloads" in str(info.value)
    assert "the source's checksum" in str(info.value)
    assert len(server.requests(FILE)) == 2


def _recalls() -> list[list[str]]:
    path = Path(os.environ["FAKE_MOO_STATE"] + ".argv")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_tape_recalls_are_bounded_for_a_wrong_sidecar(moo, tmp_path):
    data = os.urandom(30_000)
    (moo / "radar").mkdir()
    (moo / "radar" / "20200214.tar").write_bytes(data)
    (moo / "radar" / "20200214.tar.sha256").write_text("a" * 64 + "  20200214.tar\n")
    settings = FetchSettings(transport="command", command=["moo", "get", "-f", "{src}", "{dest}"],
                             checksum_sidecar="sha256", retries=5, backoff_initial=0.01, backoff_max=0.02)
    with pytest.raises(FetchError, match="did not change between downloads"):
        fetch(Source(key="20200214", url="moose:/radar/20200214.tar"), tmp_path, settings)
    recalled = [argv[-2] for argv in _recalls()]
    assert recalled == ["moose:/radar/20200214.tar.sha256", "moose:/radar/20200214.tar"] * 2
