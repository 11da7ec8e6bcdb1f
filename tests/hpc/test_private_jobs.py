"""Another user of the cluster cannot see our jobs (SLURM ``PrivateData``, set by the testbed
as on shared production clusters): not in ``squeue``, ``scontrol show job`` or ``sacct -a``.

Job names, command lines, working directories and output paths say what a user works on and
where their files live; a run's worker jobs are named after the run.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.hpc.conftest import wait_until
from tests.second_user import run_as_other

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("testbed")]


def _ids(args: list[str], *, as_other: bool) -> set[str]:
    run = run_as_other(args, timeout=60) if as_other else subprocess.run(
        args, capture_output=True, text=True, timeout=60)
    return {line.strip().split(".")[0] for line in run.stdout.splitlines() if line.strip()}


def _submit(tmp_path, *extra: str) -> str:
    return subprocess.run(
        ["sbatch", "--parsable", *extra, "-p", "debug", "-J", "hpcw-private-probe",
         "-o", str(tmp_path / "probe-%j.out"), "--wrap", "true"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip().split(";")[0]


def test_other_user_sees_none_of_our_jobs(other_user, tmp_path):
    # Held: it stays queued until cancelled, and runs nothing. The other one runs and ends, so
    # that it is in the accounting database (a held job has no eligible time for sacct).
    queued = _submit(tmp_path, "--hold")
    ended = _submit(tmp_path)
    squeue = ["squeue", "-h", "-a", "-o", "%i"]
    sacct = ["sacct", "-a", "-X", "-n", "-P", "-o", "JobID", "-S", "now-1hours"]
    try:
        # The owner sees them: otherwise "not seen" below would prove nothing.
        assert queued in _ids(squeue, as_other=False)
        wait_until(lambda: ended in _ids(sacct, as_other=False), 60, "the job in the accounting database")

        assert queued not in _ids(squeue, as_other=True)
        assert ended not in _ids(sacct, as_other=True)
        show = run_as_other(["scontrol", "show", "job", queued], timeout=60)
        assert "hpcw-private-probe" not in show.stdout and str(tmp_path) not in show.stdout
    finally:
        subprocess.run(["scancel", queued, ended], capture_output=True, timeout=60, check=False)
