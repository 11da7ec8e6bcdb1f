"""The production job script checks the whole config first and stops, with only the message,
before any run or worker job starts (issue 12, goal 4). A real sbatch of run_prod_slurm.sh."""

from __future__ import annotations

import pytest
import yaml

from tests.job_scripts.conftest import read, wait_for_job_end
from tests.job_scripts.test_run_prod import _submit_prod, _testbed_config


@pytest.mark.slurm
def test_bad_execution_config_stops_the_job_with_only_the_message(batch_system, tmp_path):
    config = _testbed_config("prod_slurm.yaml", "slurm", tmp_path)
    cfg = yaml.safe_load(config.read_text())
    # What YAML makes of an unquoted `walltime: 12:00:00`, and a logger that does not exist.
    cfg["execution"]["config"]["cluster"]["slurm"]["walltime"] = 43200
    cfg["loggers"] = {"colsole": {}}
    config.write_text(yaml.safe_dump(cfg))
    job, out_file = _submit_prod("slurm", tmp_path, config)
    state, _ = wait_for_job_end(job, 300)
    out = read(out_file)
    assert state == "FAILED", out
    assert "execution.config.cluster.slurm.walltime" in out
    assert "write it as a quoted 'HH:MM:SS', e.g. walltime: \"12:00:00\"" in out
    assert "loggers: unknown key 'colsole'" in out
    assert "Traceback" not in out and 'File "' not in out, out
    # stopped before the run: no dagster job execute, no worker job, no worker log folder
    assert "running fetch_and_regrid" not in out
    assert not (tmp_path / "worker_logs").exists()
