"""Helpers for the job-script tests: real submissions to the SLURM testbed (sbatch, and qsub
through the PBS-style wrappers), and polling of the batch system and the web UI."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.hpc.conftest import sinfo_answers, wait_until  # noqa: F401 - shared with tests/hpc

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


@pytest.fixture(scope="session")
def batch_system() -> None:
    """The SLURM testbed (with PBS-style wrappers), started if it does not answer."""
    if not sinfo_answers():
        subprocess.run(["bash", str(REPO / "ci" / "testbed" / "start.sh")], check=True, timeout=900)
    assert sinfo_answers(), "the SLURM testbed did not come up"


def submit(command: list[str], env: dict[str, str]) -> str:
    """Submit with sbatch or qsub from the project folder; return the job id (digits)."""
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{command} failed: {out.stdout}{out.stderr}"
    # sbatch: "Submitted batch job 42"; Torque-style qsub: "42"; PBS Pro: "42.server"
    match = re.search(r"(\d+)(\.\S+)?\s*$", out.stdout.strip())
    assert match, out.stdout
    return match.group(1)


def job_state(job_id: str) -> tuple[str, str]:
    """(JobState, ExitCode) from scontrol; ("GONE", "") once SLURM forgot the job."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return "GONE", ""
    state = re.search(r"JobState=(\S+)", out.stdout)
    code = re.search(r"ExitCode=(\S+)", out.stdout)
    return (state.group(1) if state else "UNKNOWN", code.group(1) if code else "")


def wait_for_job_end(job_id: str, timeout: float) -> tuple[str, str]:
    return wait_until(lambda: (s := job_state(job_id))[0] in FINAL_STATES | {"GONE"} and s,
                      timeout, f"job {job_id} to end")


def user_jobs(name_part: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, timeout=30)
    return [line for line in out.stdout.splitlines() if name_part in line]


def graphql(url: str, query: str, variables: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.loads(resp.read())
    assert "errors" not in body, body
    return body["data"]


def port_open(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
