"""The web UI started as a batch job: reachable through the printed tunnel target only,
lists the jobs, launches a run, shows it in a real browser, and stops with the job."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.job_scripts.browser import screenshot
from tests.job_scripts.conftest import (graphql, port_open, read, submit, user_jobs,
                                        wait_for_job_end, wait_until)
from tests.test_webserver import graphql_job_names

pytestmark = pytest.mark.slow

LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
TUNNEL = re.compile(r"ssh -N -L (\d+):(\S+):(\d+) (.+)")


def _start_ui(command: list[str], tmp: Path, **env_extra: str) -> tuple[str, Path, str]:
    out_file = tmp / "ui.out"
    env = dict(os.environ, DAGSTER_HOME=str(tmp / "dagster_home"), HPCW_LOGIN_HOST="login.test",
               **env_extra)
    job = submit([*command[:1], "-o", str(out_file), "-e", str(tmp / "ui.err"), *command[1:]], env)
    text = wait_until(lambda: "then open" in (t := read(out_file)) and t, 120, "the tunnel message")
    return job, out_file, text


def _stop(job: str, out_file: Path, port: int, host: str) -> None:
    subprocess.run(["scancel", job], check=True, timeout=30)
    wait_for_job_end(job, 120)
    assert wait_until(lambda: not port_open(host, port), 60, "the UI to stop listening")
    assert "stopping web UI" in read(out_file)


def _run_config(tmp: Path) -> dict:
    cfg = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    cfg["ops"]["fetch_and_regrid"]["config"]["output"]["directory"] = str(tmp / "out")
    cfg["ops"]["fetch_and_regrid"]["config"]["source"]["manifest"] = str(REPO / "configs" / "sample_manifest.yaml")
    cfg["execution"]["config"]["scale"] = 1
    return cfg


@pytest.mark.slurm
def test_ui_on_node_via_tunnel_launches_and_shows_a_run(batch_system, tmp_path):
    job, out_file, text = _start_ui(["sbatch", "job_scripts/run_dagit_slurm.sh"], tmp_path)
    try:
        match = TUNNEL.search(text)
        assert match, text
        port, target, port2, rest = int(match[1]), match[2], int(match[3]), match[4]
        node = socket.gethostname()
        # Loopback by default: the tunnel ends on the node itself, via the login host.
        assert (target, port2) == ("127.0.0.1", port) and rest.strip() == f"-J login.test {node}" \
            or rest.strip().endswith(node), text
        assert f"http://localhost:{port}" in text and "WARNING" not in text
        url = f"http://{target}:{port}"
        assert "fetch_and_regrid" in graphql_job_names(url + "/graphql", deadline_s=180)
        # Not reachable on the node's network address: other cluster users cannot get in.
        for address in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split():
            if not address.startswith("127.") and ":" not in address:
                assert not port_open(address, port), f"UI reachable on {address}"

        params = {"selector": {"repositoryLocationName": "hpc_workflows",
                               "repositoryName": "__repository__", "jobName": "fetch_and_regrid"},
                  "runConfigData": _run_config(tmp_path)}
        launched = graphql(url + "/graphql", LAUNCH, {"p": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = wait_until(
            lambda: (s := graphql(url + "/graphql", STATUS, {"id": run_id})["runOrError"]["status"])
            in ("SUCCESS", "FAILURE", "CANCELED") and s, 300, "the launched run to finish")
        assert status == "SUCCESS"
        assert (tmp_path / "out" / "tas_north_america_2p5deg_A1B.nc").is_file()

        shot = tmp_path / "run_page.png"
        page = screenshot(f"{url}/runs/{run_id}", shot,
                          ["process_batch[A1B]", "process_batch[E1]", "summarise"])
        assert "Success" in page or "SUCCESS" in page.upper()
        assert shot.stat().st_size > 20_000
        graph = tmp_path / "job_graph.png"
        # The ops sit in one graph node (it carries the config mapping): explode it.
        screenshot(f"{url}/locations/hpc_workflows/jobs/fetch_and_regrid", graph,
                   ["plan_sources", "process_batch", "summarise"],
                   click=["Explode graphs"])
        artifacts = os.environ.get("HPCW_TEST_ARTIFACTS")
        if artifacts:  # keep the screenshots for people to look at
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            for p in (shot, graph):
                (Path(artifacts) / p.name).write_bytes(p.read_bytes())
    finally:
        _stop(job, out_file, port if "port" in locals() else 0, "127.0.0.1")
    assert not user_jobs("hpcw_ui")


@pytest.mark.pbs
def test_exposed_ui_warns_and_listens_on_the_node_name(batch_system, tmp_path):
    job, out_file, text = _start_ui(["qsub", "job_scripts/run_dagit.sh"], tmp_path, HPCW_UI_EXPOSE="1")
    port = 0
    try:
        err = read(tmp_path / "ui.err") + text
        assert "WARNING: the web UI has no authentication" in err
        match = TUNNEL.search(text)
        assert match, text
        port, target = int(match[1]), match[2]
        assert target != "127.0.0.1" and match[4].strip() == "login.test"
        assert "fetch_and_regrid" in graphql_job_names(f"http://{target}:{port}/graphql", deadline_s=180)
    finally:
        _stop(job, out_file, port, match[2] if match else "127.0.0.1")
