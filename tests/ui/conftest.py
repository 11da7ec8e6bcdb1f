"""A real ``hpc-workflows ui`` process per test module, on a Unix socket or a TCP port."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.hpc.conftest import wait_until
from tests.second_user import OTHER_PYTHON, run_as_other
from tests.ui.sshd import free_port, private_sshd  # noqa: F401 - fixture for tests/ui

PROBE = Path(__file__).with_name("probe.py")
QUERY = "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"


@dataclass
class RunningUi:
    proc: subprocess.Popen
    log: Path
    state_dir: Path
    socket_path: Path | None
    port: int | None
    tunnel: str  # the printed ssh command

    @property
    def url_file(self) -> Path:
        return next(self.state_dir.glob("*.url"))

    @property
    def token(self) -> str:
        return self.url_file.read_text().splitlines()[0].split("token=", 1)[1]

    @property
    def target(self) -> str:
        """The probe's address for it."""
        return f"unix:{self.socket_path}" if self.socket_path else f"tcp:127.0.0.1:{self.port}"

    def probe(self, token: str | None = None) -> dict[str, str]:
        """Run the stand-alone probe as this user (GET, GraphQL, launchRun, websocket)."""
        out = subprocess.run([sys.executable, str(PROBE), self.target, *([token] if token else [])],
                             capture_output=True, text=True, timeout=120, check=True)
        return json.loads(out.stdout)


def probe_as_other(target: str, token: str | None = None) -> dict[str, str]:
    """Run the stand-alone probe as the second unix user (it cannot read our files: the
    probe's source goes in by ``-c``)."""
    out = run_as_other([OTHER_PYTHON, "-c", PROBE.read_text(), target, *([token] if token else [])])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def start_ui(tmp: Path, *args: str) -> RunningUi:
    """Start ``hpc-workflows ui`` with a fresh instance and state folder; wait for the banner."""
    home, state, log = tmp / "dagster_home", tmp / "state", tmp / "ui.log"
    env = dict(os.environ, DAGSTER_HOME=str(home), HPCW_UI_STATE_DIR=str(state))
    subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "init-home", str(home)], env=env,
                   check=True, capture_output=True, timeout=60)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hpc_workflows.cli", "ui", "--login-host", "login.test",
                                 "--local-port", str(free_port()), *args],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    text = wait_until(lambda: proc.poll() is None and "e.g. ssh" in (t := log.read_text()) and t
                      or (proc.poll() is not None and pytest.fail(log.read_text())), 60, "the UI banner")
    sock = re.search(r"unix socket (\S+),", text)
    tunnel = re.search(r"^\s+(ssh -N -L .+)$", text, re.M)
    port = re.search(r"\(\S+:(\d+), token required\)", text)
    return RunningUi(proc, log, state, Path(sock[1]) if sock else None, int(port[1]) if port else None,
                     tunnel[1])


def stop_ui(ui: RunningUi) -> None:
    ui.proc.terminate()
    try:
        ui.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        ui.proc.kill()
        ui.proc.wait()


@pytest.fixture(scope="package")
def socket_ui(tmp_path_factory):
    """The UI on its default Unix socket."""
    ui = start_ui(tmp_path_factory.mktemp("socket_ui"))
    try:
        yield ui
    finally:
        stop_ui(ui)


@pytest.fixture(scope="package")
def tcp_ui(tmp_path_factory):
    """The UI exposed on TCP 127.0.0.1 (what HPCW_UI_EXPOSE does with the node's name)."""
    ui = start_ui(tmp_path_factory.mktemp("tcp_ui"), "--host", "127.0.0.1")
    try:
        yield ui
    finally:
        stop_ui(ui)


def owner_job_names(ui: RunningUi, deadline_s: float = 120) -> list[str]:
    """The jobs the owner sees through GraphQL with the token (polled until the code loads)."""
    import httpx

    transport = httpx.HTTPTransport(uds=str(ui.socket_path)) if ui.socket_path else None
    base = "http://localhost" if ui.socket_path else f"http://127.0.0.1:{ui.port}"

    def names():
        try:
            with httpx.Client(transport=transport, timeout=30) as client:
                resp = client.post(base + "/graphql", json={"query": QUERY},
                                   headers={"Authorization": f"token {ui.token}"})
            nodes = resp.json()["data"]["repositoriesOrError"].get("nodes")
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return nodes and sorted(j["name"] for n in nodes for j in n["jobs"])

    return wait_until(names, deadline_s, "the UI to list the jobs", interval=0.5)
