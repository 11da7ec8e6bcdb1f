"""Fixtures for the fetch tests: a fault-injecting HTTP server and the stand-in `moo` client."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from hpc_workflows.fetch import FetchSettings
from tests.fetch.fault_server import FaultServer

FAKES = Path(__file__).resolve().parents[1] / "fakes"


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def fast_settings(tmp_path_factory: pytest.TempPathFactory) -> FetchSettings:
    """Settings with tiny retry delays and short timeouts so fault tests finish quickly
    (connection-slot lock files in a temporary folder, not the machine's default one)."""
    return FetchSettings(
        retries=3, backoff_initial=0.01, backoff_factor=2.0, backoff_max=0.05, jitter=0.1,
        retry_after_max=2.0, connect_timeout=2.0, read_timeout=0.5, chunk_size=64 * 1024,
        host_lock_dir=str(tmp_path_factory.mktemp("host-slots")),
    )


@pytest.fixture
def moo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the stand-in `moo` archive client on PATH; return its archive root folder.

    Files placed under the returned folder are served as ``moose:/<relative path>``.
    ``FAKE_MOO_FAIL_FIRST=N`` (set by a test) makes the first N calls fail.
    """
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # Same interpreter as the tests (pyenv shims on PATH are slow to start).
    text = (FAKES / "moo").read_text().split("\n", 1)[1]
    (bindir / "moo").write_text(f"#!{sys.executable}\n{text}")
    os.chmod(bindir / "moo", 0o755)
    root = tmp_path / "archive"
    root.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MOO_ROOT", str(root))
    monkeypatch.setenv("FAKE_MOO_STATE", str(tmp_path / "moo-state"))
    monkeypatch.delenv("FAKE_MOO_FAIL_FIRST", raising=False)
    return root


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback test servers must be reached directly, whatever proxy the CI machine sets."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
