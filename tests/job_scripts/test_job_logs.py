"""Where the production job scripts and their workers write logs, and where runs write outputs.

Job logs go under the project's ``logs/`` folder (tracked, contents git-ignored), never into the
checkout root: ``#SBATCH --output=logs/...`` for SLURM, ``#PBS -o logs/`` + ``-j oe`` for PBS, and
for a qsub that ignores directives inside the script (SLURM's Torque-style wrapper, used here)
the job moves its own log files into ``logs/``. Submitted for real to the testbed, from the
project folder, as a user does; a config that fails its check keeps each job short.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.job_scripts.conftest import read, submit, wait_for_job_end


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)


def test_logs_folder_is_in_git_and_its_contents_are_ignored() -> None:
    assert _git("ls-files", "--error-unmatch", "logs/.gitkeep").returncode == 0, (
        "logs/ must exist in every checkout: sbatch does not create the folder of --output"
    )
    for name in ("logs/hpcw_prod-123.out", "logs/run_prod.sh.o123", "logs/dask-workers/x.err"):
        assert _git("check-ignore", "-q", name).returncode == 0, f"{name} is not git-ignored"


def test_shipped_pbs_and_slurm_configs_do_not_share_outputs_and_log_under_logs() -> None:
    cfgs = {kind: yaml.safe_load((REPO / "configs" / f"prod_{kind}.yaml").read_text())
            for kind in ("pbs", "slurm")}
    outputs = {kind: cfg["ops"]["fetch_and_regrid"]["config"]["output"] for kind, cfg in cfgs.items()}
    # A shared folder made a SLURM run after a PBS run skip every file as already done.
    assert outputs["pbs"]["directory"] != outputs["slurm"]["directory"]
    for kind, cfg in cfgs.items():
        log_dir = cfg["execution"]["config"]["cluster"][kind]["log_directory"]
        assert Path(log_dir).parts[0] == "logs", f"prod_{kind}.yaml log_directory {log_dir}"


def _failing_config(tmp: Path, kind: str) -> Path:
    """The shipped config with a window that check-config rejects: the job ends in seconds."""
    cfg = yaml.safe_load((REPO / "configs" / f"prod_{kind}.yaml").read_text())
    cfg["ops"]["fetch_and_regrid"]["config"]["window"]["end"] = "1999-01-01"
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _logs_of(folder: Path, job: str) -> list[Path]:
    """Files of one job: <name>-<id>.out (SLURM), <name>.o<id> / .e<id> (PBS and the wrapper)."""
    pattern = re.compile(rf"(-|\.[oe]){job}(\.out|\.err)?$")
    return sorted(p for p in folder.iterdir() if p.is_file() and pattern.search(p.name))


SCRIPTS = {"pbs": ["qsub", "job_scripts/run_prod.sh"], "slurm": ["sbatch", "job_scripts/run_prod_slurm.sh"]}


@pytest.mark.parametrize("kind", [pytest.param("pbs", marks=pytest.mark.pbs),
                                  pytest.param("slurm", marks=pytest.mark.slurm)])
def test_job_log_lands_in_logs_not_in_the_checkout_root(batch_system, tmp_path: Path, kind: str) -> None:
    env = dict(os.environ, HPCW_CONFIG=str(_failing_config(tmp_path, kind)),
               DAGSTER_HOME=str(tmp_path / "dagster_home"))
    job = submit(SCRIPTS[kind], env)  # no -o: where the script and the batch system put it
    try:
        state, _ = wait_for_job_end(job, 300)
        logs = _logs_of(REPO / "logs", job)
        text = "".join(read(p) for p in logs)
        assert state == "FAILED", (state, text)
        assert "window.end" in text, f"the job's output is not in logs/: {[p.name for p in logs]}"
        assert _logs_of(REPO, job) == [], "a job log was left in the checkout root"
        if kind == "slurm":
            assert [p.name for p in logs] == [f"hpcw_prod-{job}.out"]
    finally:
        for p in _logs_of(REPO / "logs", job) + _logs_of(REPO, job):
            p.unlink(missing_ok=True)
