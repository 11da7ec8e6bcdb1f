"""A worker job the batch system refuses: the scheduler's own line and the field to change
(issue 12, goal 6), on the real SLURM testbed through sbatch and through PBS-style qsub.

Run as a user runs it, ``dagster job execute`` in a subprocess, so that everything printed to
the terminal is checked, tornado's logging included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import JOBS_FILE, REPO, batch_cluster

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("testbed")]


def _execute(hpc_env: Path, kind: str, **overrides) -> str:
    config = hpc_env / "run.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": {
        "cluster": {kind: batch_cluster(hpc_env, **overrides)}, "scale": 1,
        "worker_start_timeout": 120}}}))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-f", str(JOBS_FILE),
         "-j", "fan_job", "-c", str(config)],
        cwd=hpc_env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    return out


def _assert_short(out: str) -> None:
    # no tornado traceback of the cluster's event loop, no dask-jobqueue wrapper text
    for noise in ("tornado.application", "Exception in callback", "Command exited with non-zero"):
        assert noise not in out, f"{noise!r} in the output:\n{out[-4000:]}"


@pytest.mark.slurm
@pytest.mark.parametrize(("override", "said", "field"), [
    ({"queue": "no_such_queue"}, "sbatch: error: invalid partition specified: no_such_queue",
     "execution.config.cluster.slurm.queue"),
    ({"memory": "100000GiB"}, "sbatch: error: Memory specification can not be satisfied",
     "execution.config.cluster.slurm.memory"),
], ids=["partition", "memory"])
def test_sbatch_refusal_says_the_schedulers_line_and_the_field(hpc_env, override, said, field):
    out = _execute(hpc_env, "slurm", **override)
    assert said in out and f"change {field}" in out, out[-4000:]
    _assert_short(out)


@pytest.mark.pbs
def test_qsub_refusal_says_the_schedulers_line_and_the_field(hpc_env):
    out = _execute(hpc_env, "pbs", queue="no_such_queue")
    assert "error: invalid partition specified: no_such_queue" in out, out[-4000:]
    assert "change execution.config.cluster.pbs.queue" in out
    assert "There was an error running" not in out  # the wrapper's framing, not the reason
    _assert_short(out)
