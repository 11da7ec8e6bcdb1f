"""`dagit -h HOST -p PORT -m hpc_workflows` serves a UI whose code loaded and lists the jobs.

These upstream commands stay as they were, unprotected (any user of the node can use them);
the protected way, `hpc-workflows ui`, is tested in tests/ui/.

`/server_info` answers 200 even when the code failed to load, so the job list is read through
the GraphQL endpoint.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

QUERY = """
{ repositoriesOrError { __typename
    ... on RepositoryConnection { nodes { name jobs { name } } }
    ... on PythonError { message } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql_job_names(url: str, deadline_s: float = 120.0, proc: subprocess.Popen | None = None,
                      headers: dict[str, str] | None = None) -> list[str]:
    """Poll the GraphQL endpoint until the code location answers; return the job names.
    ``headers``: e.g. the ``Authorization: token ...`` that ``hpc-workflows ui`` wants."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"web server exited early with {proc.returncode}")
        try:
            req = urllib.request.Request(
                url, data=json.dumps({"query": QUERY}).encode(),
                headers={"Content-Type": "application/json", **(headers or {})},
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                data = json.loads(resp.read())["data"]["repositoriesOrError"]
            if data["__typename"] == "RepositoryConnection" and data["nodes"]:
                return sorted(j["name"] for n in data["nodes"] for j in n["jobs"])
            last = data
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError) as exc:
            last = exc
        time.sleep(0.5)  # polling interval, not synchronisation: the loop checks the condition
    raise AssertionError(f"UI did not list jobs within {deadline_s} s: {last}")


@pytest.mark.parametrize("command", ["dagit", "dagster-webserver"])
def test_ui_lists_jobs(command, dagster_home, tmp_path):
    port = _free_port()
    exe = Path(sys.executable).parent / command
    log = open(tmp_path / "ui.log", "w")
    proc = subprocess.Popen([str(exe), "-h", "127.0.0.1", "-p", str(port), "-m", "hpc_workflows"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        names = graphql_job_names(f"http://127.0.0.1:{port}/graphql", proc=proc)
        assert "fetch_and_regrid" in names
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
