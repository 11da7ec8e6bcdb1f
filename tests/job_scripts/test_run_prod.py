"""`qsub job_scripts/run_prod.sh` and `sbatch job_scripts/run_prod_slurm.sh`, for real.

Each submits the shipped production config (site fields set for the testbed: queue, network
interface, small workers) to the SLURM testbed; the coordinator job runs fetch_and_regrid,
whose steps run on Dask workers that the executor submits as further batch jobs. Checked:
the job's exit status, the outputs, worker logs in log_directory, and that no job is left.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from tests.conftest import REPO
from tests.job_scripts.conftest import read, submit, user_jobs, wait_for_job_end, wait_until


def _testbed_config(shipped: str, kind: str, tmp: Path, **overrides) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / shipped).read_text())
    wf = cfg["ops"]["fetch_and_regrid"]["config"]
    wf["output"]["directory"] = str(tmp / "out")
    wf.update(overrides)
    cluster = cfg["execution"]["config"]["cluster"][kind]
    # The site fields, as a user of this one-node cluster would set them.
    cluster.update(queue="debug", interface="lo", cores=1, memory="1GiB", walltime="00:20:00",
                   local_directory=str(tmp / "scratch"), log_directory=str(tmp / "worker_logs"))
    cfg["execution"]["config"]["adapt"] = {"minimum": 0, "maximum": 2}
    cfg["execution"]["config"]["worker_start_timeout"] = 300
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env(tmp: Path, config: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HPCW_CONFIG=str(config), DAGSTER_HOME=str(tmp / "dagster_home"))
    return env


def _check_outputs(tmp: Path) -> None:
    for key in ("A1B", "E1"):
        with xr.open_dataset(tmp / "out" / f"tas_1deg_{key}.nc") as ds:
            tas = ds["air_temperature"]
            assert tas.shape == (100, 180, 360)
            # regional input on a global grid: values over North America, missing elsewhere
            first = tas.isel(time=0).values
            assert 300 < np.isfinite(first).sum() < 5000
            assert 200 < np.nanmean(first) < 320
            assert ds.attrs["hpc_workflows_regrid_method"] == "conservative"


def _worker_job_name(tmp: Path) -> str:
    """The run's worker job name (dagster-<run id>), read off its logs in log_directory."""
    # SLURM: <name>-<jobid>.err/.out; PBS: <name>.e<jobid>/.o<jobid>
    # (dot files there are the run's temporary TLS credentials, removed when it ends)
    names = {re.sub(r"(-\d+\.(err|out)|\.[eo]\d+)$", "", p.name)
             for p in (tmp / "worker_logs").glob("[!.]*")}
    assert len(names) == 1, f"expected the logs of one run's workers in log_directory: {names}"
    return names.pop()


def _check_quiet(tmp: Path, out: str) -> None:
    """The job log is INFO without warnings from dagster's CLI; worker logs have no tracebacks."""
    for noise in (" - DEBUG - ", "SupersessionWarning", "Traceback", "CommClosedError", "StreamClosedError"):
        assert noise not in out, f"{noise!r} in the job log:\n{out[-3000:]}"
    for p in (tmp / "worker_logs").glob("[!.]*"):
        text = read(p)
        for noise in ("Traceback", "CommClosedError", "StreamClosedError", "distributed.sizeof"):
            assert noise not in text, f"{noise!r} in worker log {p.name}:\n{text[-3000:]}"


def _check_clean(job_id: str, tmp: Path, out: str) -> None:
    name = _worker_job_name(tmp)
    assert wait_until(lambda: not user_jobs(name), 60, "every worker job to be gone")
    assert not list((tmp / "worker_logs").glob(".dask-jobqueue.worker.key*")), "TLS key left behind"
    assert not user_jobs(f"{job_id} ")


def _step_started(home: Path, step_prefix: str) -> bool:
    """True once a step whose key starts with ``step_prefix`` has started, in any run of ``home``."""
    if not (home / "dagster.yaml").exists():
        return False
    import dagster as dg
    from dagster._core.events import DagsterEventType

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return any((r.step_key or "").startswith(step_prefix)
                   for run in instance.get_runs()
                   for r in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START))


def _engine_event_said(home: Path, text: str) -> bool:
    """True when an engine event of a run in ``home`` says ``text``."""
    import dagster as dg
    from dagster._core.events import DagsterEventType

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return any(text in r.user_message
                   for run in instance.get_runs()
                   for r in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT))


# How each batch system is asked to run the production script.
SUBMIT = {
    "pbs": (["qsub", "-o", "{out}", "-e", "{err}", "job_scripts/run_prod.sh"], "prod_pbs.yaml"),
    "slurm": (["sbatch", "-o", "{out}", "job_scripts/run_prod_slurm.sh"], "prod_slurm.yaml"),
}


def _submit_prod(kind: str, tmp: Path, config: Path) -> tuple[str, Path]:
    """Submit the production script of ``kind`` with ``config``; return (job id, output file)."""
    out_file, err_file = tmp / "job.out", tmp / "job.err"
    command = [a.format(out=out_file, err=err_file) for a in SUBMIT[kind][0]]
    return submit(command, _env(tmp, config)), out_file


@pytest.mark.slow
@pytest.mark.parametrize("kind", [pytest.param("pbs", marks=pytest.mark.pbs),
                                  pytest.param("slurm", marks=pytest.mark.slurm)])
def test_run_prod(batch_system, tmp_path, kind):
    """qsub job_scripts/run_prod.sh / sbatch job_scripts/run_prod_slurm.sh, end to end."""
    config = _testbed_config(SUBMIT[kind][1], kind, tmp_path)
    job, out_file = _submit_prod(kind, tmp_path, config)
    state, code = wait_for_job_end(job, 600)
    out = read(out_file) + read(tmp_path / "job.err")
    assert (state, code) == ("COMPLETED", "0:0"), out[-4000:]
    assert "run succeeded" in out
    _check_outputs(tmp_path)
    _check_quiet(tmp_path, out)
    _check_clean(job, tmp_path, out)


@pytest.mark.slurm
@pytest.mark.slow
def test_failed_run_fails_the_batch_job(batch_system, tmp_path):
    """A run that fails must make the batch job fail (so dependent jobs and users see it)."""
    config = _testbed_config("prod_slurm.yaml", "slurm", tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["ops"]["fetch_and_regrid"]["config"]["regrid"]["variables"] = ["no_such_variable"]
    config.write_text(yaml.safe_dump(cfg))
    job, out_file = _submit_prod("slurm", tmp_path, config)
    state, code = wait_for_job_end(job, 600)
    out = read(out_file)
    assert state == "FAILED" and code != "0:0", out[-3000:]
    assert "run FAILED" in out and "no_such_variable" in out
    name = _worker_job_name(tmp_path)
    assert wait_until(lambda: not user_jobs(name), 60, "worker jobs to be cancelled")


@pytest.mark.slurm
def test_bad_config_fails_before_any_worker_is_queued(batch_system, tmp_path):
    config = _testbed_config("prod_slurm.yaml", "slurm", tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["ops"]["fetch_and_regrid"]["config"]["window"]["end"] = "1999-01-01"
    config.write_text(yaml.safe_dump(cfg))
    job, out_file = _submit_prod("slurm", tmp_path, config)
    state, code = wait_for_job_end(job, 300)
    out = read(out_file)
    assert state == "FAILED", out
    assert "window.end" in out and "set end on or after start" in out
    assert not (tmp_path / "worker_logs").exists()


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelling_the_coordinator_cancels_every_worker_job(batch_system, tmp_path):
    """scancel of the production job mid-run leaves no worker job behind."""
    config = _testbed_config("prod_slurm.yaml", "slurm", tmp_path)
    cfg = yaml.safe_load(config.read_text())
    # An archive client that takes 5 minutes: the run is surely mid-step when cancelled.
    cfg["ops"]["fetch_and_regrid"]["config"]["source"].update(
        transport="command", command=["bash", "-c", 'sleep 300; cp "$0" "$1"', "{src}", "{dest}"])
    config.write_text(yaml.safe_dump(cfg))
    job, out_file = _submit_prod("slurm", tmp_path, config)
    logs = tmp_path / "worker_logs"

    def fetch_started() -> bool:  # from the run history: the console shows no DEBUG events
        return _step_started(tmp_path / "dagster_home", "fetch_and_regrid.process_batch")

    try:
        wait_until(fetch_started, 240, "a fetch step to start in a worker job", interval=2)
        run_name = _worker_job_name(tmp_path)
        assert user_jobs(run_name), "the step runs in a worker batch job"
    finally:
        subprocess.run(["scancel", job], check=True, timeout=30)
    state, _ = wait_for_job_end(job, 120)
    assert state in ("CANCELLED", "FAILED", "GONE")
    assert wait_until(lambda: not user_jobs(run_name), 120, "the worker jobs to be cancelled")
    # The executor's teardown ran: its engine event (DEBUG, so in the run history, not the log).
    assert _engine_event_said(tmp_path / "dagster_home", "cancelling steps and worker jobs"), read(out_file)
    # the run's private key does not outlive it
    assert not list(logs.glob(".dask-jobqueue.worker.key*"))
