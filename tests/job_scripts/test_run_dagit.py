"""The web UI started as a batch job: it answers only its owner, the printed tunnel (run as
printed, through a real sshd) and the URL from the private file open it, it lists the jobs,
launches a run, shows it in a real browser, and stops with the job."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.job_scripts.browser import screenshot
from tests.job_scripts.conftest import (graphql, port_open, read, submit, user_jobs,
                                        wait_for_job_end, wait_until)
from tests.second_user import other_user  # noqa: F401 - fixture
from tests.test_webserver import graphql_job_names
from tests.ui.conftest import probe_as_other
from tests.ui.sshd import private_sshd  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
SOCKET_TUNNEL = re.compile(r"^\s+(ssh -N -L (\d+):(/\S+/ui\.sock) -J login\.test (\S+))$", re.M)
TCP_TUNNEL = re.compile(r"^\s+(ssh -N -L (\d+):(\S+):(\d+) login\.test)$", re.M)
URL_FILE = re.compile(r"^\s+(/\S+\.url)$", re.M)


def _start_ui(command: list[str], tmp: Path, **env_extra: str) -> tuple[str, Path, str, Path]:
    out_file = tmp / "ui.out"
    env = dict(os.environ, DAGSTER_HOME=str(tmp / "dagster_home"), HPCW_LOGIN_HOST="login.test",
               HPCW_UI_STATE_DIR=str(tmp / "ui_state"), **env_extra)
    job = submit([*command[:1], "-o", str(out_file), "-e", str(tmp / "ui.err"), *command[1:]], env)
    try:
        text = wait_until(lambda: "then open" in (t := read(out_file)) and "e.g. ssh" in t and t, 120,
                          "the tunnel message")
    except AssertionError:
        subprocess.run(["scancel", job], timeout=30)  # do not leave a UI running for 8 hours
        raise
    url_file = Path(URL_FILE.search(text)[1])
    assert url_file.parent == tmp / "ui_state", text
    return job, out_file, text, url_file


def _token_and_checks(text: str, out_file: Path, url_file: Path) -> tuple[str, str]:
    """The URL and token from the private file; neither in the job log, the file 0600."""
    url = url_file.read_text().splitlines()[0]
    token = url.split("token=", 1)[1]
    assert token not in text and token not in read(out_file)
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(url_file.parent.stat().st_mode) == 0o700
    return url, token


def _stop(job: str, out_file: Path, gone: Callable[[], bool]) -> None:
    subprocess.run(["scancel", job], check=True, timeout=30)
    wait_for_job_end(job, 120)
    assert wait_until(gone, 60, "the UI to stop listening")
    assert "stopping web UI" in read(out_file)


def _run_config(tmp: Path) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    cfg["ops"]["fetch_and_regrid"]["config"]["output"]["directory"] = str(tmp / "out")
    cfg["ops"]["fetch_and_regrid"]["config"]["source"]["manifest"] = str(REPO / "configs" / "sample_manifest.yaml")
    cfg["execution"]["config"]["scale"] = 1
    return cfg


@pytest.mark.slurm
def test_ui_on_node_via_tunnel_launches_and_shows_a_run(batch_system, private_sshd, other_user, tmp_path):
    job, out_file, text, url_file = _start_ui(["sbatch", "job_scripts/run_dagit_slurm.sh"], tmp_path)
    sock, tunnel = None, None
    try:
        match = SOCKET_TUNNEL.search(text)
        assert match, text
        printed, port, sock, node = match[1], int(match[2]), Path(match[3]), match[4]
        # By default a Unix socket in a folder only we can enter, reached via the login host.
        assert node == socket.gethostname() and "WARNING" not in text
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        url, token = _token_and_checks(text, out_file, url_file)
        assert url.startswith(f"http://localhost:{port}/?token=")
        # Another user of the node cannot even connect, token or not.
        assert set(probe_as_other(f"unix:{sock}", token).values()) == {"PermissionError"}

        # The printed command, as printed, through a real sshd.
        tunnel = private_sshd.tunnel(printed, port)
        base, auth = f"http://localhost:{port}", {"Authorization": f"token {token}"}
        assert "fetch_and_regrid" in graphql_job_names(base + "/graphql", deadline_s=180, headers=auth)
        params = {"selector": {"repositoryLocationName": "hpc_workflows",
                               "repositoryName": "__repository__", "jobName": "fetch_and_regrid"},
                  "runConfigData": _run_config(tmp_path)}
        launched = graphql(base + "/graphql", LAUNCH, {"p": params}, auth)["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = wait_until(
            lambda: (s := graphql(base + "/graphql", STATUS, {"id": run_id}, auth)["runOrError"]["status"])
            in ("SUCCESS", "FAILURE", "CANCELED") and s, 300, "the launched run to finish")
        assert status == "SUCCESS"
        assert (tmp_path / "out" / "tas_north_america_2p5deg_A1B.nc").is_file()
        # The token reached the UI on every request, yet the instance (runs, events, logs) has none of it.
        stored = [f for f in (tmp_path / "dagster_home").rglob("*") if f.is_file()]
        assert stored and not [f for f in stored if token.encode() in f.read_bytes()]

        # A browser brings the token once (?token=), then lives on the cookie it gets back.
        shot = tmp_path / "run_page.png"
        page = screenshot(f"{base}/runs/{run_id}?token={token}", shot,
                          ["process_batch[A1B]", "process_batch[E1]", "summarise"])
        assert "Success" in page or "SUCCESS" in page.upper()
        assert "403 Forbidden" not in page
        assert shot.stat().st_size > 20_000
        graph = tmp_path / "job_graph.png"
        # The ops sit in one graph node (it carries the config mapping): explode it.
        screenshot(f"{base}/locations/hpc_workflows/jobs/fetch_and_regrid?token={token}", graph,
                   ["plan_sources", "process_batch", "summarise"],
                   click=["Explode graphs"])
        artifacts = os.environ.get("HPCW_TEST_ARTIFACTS")
        if artifacts:  # keep the screenshots for people to look at
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            for p in (shot, graph):
                (Path(artifacts) / p.name).write_bytes(p.read_bytes())
    finally:
        if tunnel is not None:
            tunnel.terminate()
            tunnel.wait(timeout=30)
        # The job's end removes the socket and the URL file (the token dies with the UI).
        _stop(job, out_file, lambda: not url_file.exists() and (sock is None or not sock.exists()))
    assert not user_jobs("hpcw_ui")


@pytest.mark.pbs
def test_exposed_ui_warns_and_still_wants_the_token(batch_system, tmp_path):
    job, out_file, text, url_file = _start_ui(["qsub", "job_scripts/run_dagit.sh"], tmp_path,
                                              HPCW_UI_EXPOSE="1")
    port, target = 0, "127.0.0.1"
    try:
        err = read(tmp_path / "ui.err") + text
        assert "WARNING: the web UI listens on" in err and "secret token" in err
        match = TCP_TUNNEL.search(text)
        assert match, text
        port, target = int(match[2]), match[3]
        assert target == socket.gethostname() and int(match[4]) == port
        url, token = _token_and_checks(text, out_file, url_file)
        direct = f"http://{target}:{port}"
        assert url_file.read_text().splitlines()[1] == f"{direct}/?token={token}"
        auth = {"Authorization": f"token {token}"}
        assert "fetch_and_regrid" in graphql_job_names(f"{direct}/graphql", deadline_s=180, headers=auth)
        with pytest.raises(urllib.error.HTTPError, match="403"):
            graphql(f"{direct}/graphql", STATUS, {"id": "x"})
    finally:
        _stop(job, out_file, lambda: not port_open(target, port) and not url_file.exists())
