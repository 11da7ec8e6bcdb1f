"""Goal 1 of issue 12: the web UI answers only its owner, checked with a second real unix user.

A real ``hpc-workflows ui`` serves the real Dagster app; the other account tries what the
review did (read the UI, query GraphQL, launch a run, open the subscriptions websocket).
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys

import psutil
import pytest

from tests.ui.conftest import owner_job_names, probe_as_other, start_ui

pytestmark = pytest.mark.slow

ALL_ATTEMPTS = ("get", "graphql", "launch", "websocket")


def test_tcp_ui_refuses_another_user_and_serves_its_owner_with_the_token(tcp_ui, other_user):
    assert "fetch_and_regrid" in owner_job_names(tcp_ui)
    # The other user reaches the port (loopback is not a boundary) but every request is refused.
    assert probe_as_other(tcp_ui.target) == dict.fromkeys(ALL_ATTEMPTS, "403")
    assert probe_as_other(tcp_ui.target, "not-the-token-" + "x" * 30) == dict.fromkeys(ALL_ATTEMPTS, "403")
    # The owner needs the token too: being the same user is not what lets a request in.
    assert tcp_ui.probe() == dict.fromkeys(ALL_ATTEMPTS, "403")
    assert tcp_ui.probe(tcp_ui.token) == {"get": "200", "graphql": "200", "launch": "200",
                                          "websocket": "101"}


def test_socket_ui_cannot_even_be_reached_by_another_user(socket_ui, other_user):
    assert "fetch_and_regrid" in owner_job_names(socket_ui)
    refused = probe_as_other(socket_ui.target, socket_ui.token)  # even with the secret
    assert refused == dict.fromkeys(ALL_ATTEMPTS, "PermissionError")
    assert socket_ui.probe() == dict.fromkeys(ALL_ATTEMPTS, "403")
    assert socket_ui.probe(socket_ui.token)["websocket"] == "101"


def test_secret_lives_only_in_a_private_file(socket_ui):
    owner_job_names(socket_ui)
    token = socket_ui.token
    assert stat.S_IMODE(socket_ui.url_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(socket_ui.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(socket_ui.socket_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(socket_ui.socket_path.stat().st_mode) == 0o600
    # The log (the job log, often world-readable) says where the URL is, not what it is,
    # even after requests that carried the token in their query string.
    import httpx

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_ui.socket_path)), timeout=30) as client:
        assert client.get(f"http://localhost/runs?token={token}").status_code == 302
    log = socket_ui.log.read_text()
    assert str(socket_ui.url_file) in log and token not in log
    # Dagster's code server (its gRPC API can start runs) listens in the same private folder,
    # not in the shared /tmp, and the token is in no process's command line.
    children = psutil.Process(socket_ui.proc.pid).children(recursive=True)
    grpc = [c.cmdline() for c in children if "grpc" in c.cmdline()]
    assert grpc, [c.cmdline() for c in children]
    socket_arg = grpc[0][grpc[0].index("--socket") + 1]
    assert os.path.dirname(socket_arg) == str(socket_ui.socket_path.parent)
    for proc in [psutil.Process(socket_ui.proc.pid), *children]:
        assert token not in " ".join(proc.cmdline())


def test_browser_gets_a_cookie_and_a_clean_url(tcp_ui):
    import httpx

    owner_job_names(tcp_ui)
    base = f"http://127.0.0.1:{tcp_ui.port}"
    with httpx.Client(timeout=30) as client:
        first = client.get(f"{base}/runs?token={tcp_ui.token}&view=x")
        assert first.status_code == 302 and first.headers["location"] == "/runs?view=x"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert client.get(f"{base}/runs?view=x").status_code == 200  # the cookie alone
    with httpx.Client(timeout=30) as stranger:
        assert stranger.get(f"{base}/runs").status_code == 403


def test_stopping_removes_the_socket_and_the_url_file(tmp_path):
    ui = start_ui(tmp_path)
    url_file, folder = ui.url_file, ui.socket_path.parent
    ui.proc.send_signal(signal.SIGTERM)  # what the job script's trap sends
    assert ui.proc.wait(timeout=120) == 0
    assert not url_file.exists() and not folder.exists()


def test_bad_options_get_one_line_naming_the_option(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "ui", "--port", "5"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--port needs --host" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) <= 2


def test_a_port_in_use_is_named_with_the_fix(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "ui", "--host", "127.0.0.1",
                              "--port", str(port), "--state-dir", str(tmp_path / "state")],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"--port {port}: cannot listen there" in out.stderr
    assert "Traceback" not in out.stderr
