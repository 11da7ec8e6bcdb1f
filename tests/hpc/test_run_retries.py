"""Automatic retry of a run whose coordinator job the batch system lost, and only of those.

Slow tests: real ``dagster job launch`` on an instance with ``BatchRunLauncher`` and
``run_retries``, a real ``dagster-daemon`` (run monitoring and Dagster's retry daemon), the
SLURM testbed. Fast tests: the retry settings and the loss rule on the batch system's words.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hpc_workflows.hpc import run_retries
from hpc_workflows.hpc.run_retries import BUDGET_TAG, RetrySettingError, job_loss, launch_tags
from hpc_workflows.hpc.scheduler_cli import JobState

from .conftest import queue_jobs, wait_until
from .test_run_launcher import (  # noqa: F401 - daemon is a fixture
    BIN,
    JOB_ID_TAG,
    _coordinator_running,
    _instance_with_launcher,
    _launch,
    _messages,
    _run,
    daemon,
    launch_refused,
    run_daemon,
)

OWNER = os.getuid()


# -- the settings and the rule (no batch system) -----------------------------------------------


def test_tag_names_are_dagsters():
    from dagster._core.storage import tags

    assert run_retries.MAX_RETRIES_TAG == tags.MAX_RETRIES_TAG
    assert run_retries.RETRY_STRATEGY_TAG == tags.RETRY_STRATEGY_TAG
    assert run_retries.WILL_RETRY_TAG == tags.WILL_RETRY_TAG


def test_launch_keeps_the_budget_and_disarms_dagsters_tag():
    assert launch_tags({}, enabled=True, max_retries=2) == {
        BUDGET_TAG: "2", "dagster/max_retries": "0", "dagster/retry_strategy": "ALL_STEPS"}
    # The run's own tags override the instance's setting and the default strategy.
    assert launch_tags({"dagster/max_retries": "5"}, True, 2)[BUDGET_TAG] == "5"
    assert "dagster/retry_strategy" not in launch_tags({"dagster/retry_strategy": "FROM_FAILURE"}, True, 2)
    # A retried run inherits its parent's budget and its armed tag: the budget wins.
    assert launch_tags({BUDGET_TAG: "3", "dagster/max_retries": "3", "dagster/retry_strategy": "ALL_STEPS"},
                       True, 2) == {BUDGET_TAG: "3", "dagster/max_retries": "0"}
    assert launch_tags({"dagster/max_retries": "5"}, enabled=False, max_retries=0) == {}


@pytest.mark.parametrize(
    ("tags", "words"),
    [
        ({"dagster/max_retries": "two"}, "run tag dagster/max_retries: 'two' is not a whole number"),
        ({"dagster/max_retries": "-1"}, "run tag dagster/max_retries: '-1' is not a whole number"),
        ({"dagster/retry_strategy": "from_failure"}, "write FROM_FAILURE"),
    ],
)
def test_bad_retry_tags_are_refused_even_with_retries_off(tags, words):
    with pytest.raises(RetrySettingError, match=words):
        launch_tags(tags, enabled=False, max_retries=0)


@pytest.mark.parametrize(
    ("state", "retry"),
    [
        (JobState("1", "TIMEOUT", True, exit_code="0:15"), True),
        (JobState("1", "NODE_FAIL", True, exit_code="0:0"), True),
        (JobState("1", "PREEMPTED", True, exit_code="0:15"), True),
        (JobState("1", "CANCELLED", True, exit_code="0:15", cancelled_by=OWNER + 1), True),  # an admin
        (JobState("1", "FAILED", True, exit_code="0:9"), True),  # SIGKILL from outside
        (JobState("1", "GONE", True), True),  # purged: it ended without reporting
        (JobState("1", "RUNNING", False), True),  # SIGTERM while the batch system says RUNNING
        (JobState("1", "CANCELLED", True, exit_code="0:15", cancelled_by=OWNER), False),  # scancel: stop
        (JobState("1", "OUT_OF_MEMORY", True, exit_code="0:125"), False),  # same memory, same kill
        (JobState("1", "FAILED", True, exit_code="1:0"), False),  # the job's own code
        # PBS: qstat never says who ended a job, so an end without a reason may be the owner's qdel
        (JobState("1", "F", True, "Exit_status 271", says_who_cancelled=False), False),
        (JobState("1", "GONE", True, says_who_cancelled=False), False),
        (JobState("1", "R", False, says_who_cancelled=False), False),
    ],
)
def test_which_job_ends_are_losses(state, retry):
    loss = job_loss(state, owner_uid=OWNER)
    assert loss.retry is retry, loss.why
    assert state.describe() in loss.why


def test_a_failure_recorded_before_the_arm_is_marked_for_retry_as_the_job_ends(dagster_home: Path):
    """The race of the SIGTERM path, lost on purpose: the run's teardown records the failure first."""
    import dagster as dg

    from hpc_workflows.hpc.coordinator_job import confirm_retry

    cfg = yaml.safe_load((dagster_home / "dagster.yaml").read_text())
    cfg["run_retries"] = {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(cfg))

    @dg.op
    def noop() -> None:
        pass

    @dg.job
    def tiny():
        noop()

    with dg.DagsterInstance.get() as instance:
        runs = [instance.create_run_for_job(tiny, tags={BUDGET_TAG: "1", "dagster/max_retries": "0"})
                for _ in range(2)]
        for run in runs:
            instance.report_run_failed(run, "interrupted")  # as the torn-down run records it
            assert instance.get_run_by_id(run.run_id).tags["dagster/will_retry"] == "false"
        armed, never_armed = runs
        instance.add_run_tags(armed.run_id, {"dagster/max_retries": "1"})  # the late arm
        assert confirm_retry(instance, armed.run_id)
        assert instance.get_run_by_id(armed.run_id).tags["dagster/will_retry"] == "true"
        assert not confirm_retry(instance, never_armed.run_id)  # a run not armed stays as it is
        assert instance.get_run_by_id(never_armed.run_id).tags["dagster/will_retry"] == "false"


# -- real runs on the testbed ------------------------------------------------------------------


@pytest.fixture
def launcher_env(hpc_env: Path, dagster_home: Path, monkeypatch) -> Path:
    """Instance with the launcher, run monitoring and run retries (one), before the daemon starts."""
    import dagster as dg

    _instance_with_launcher(dagster_home, hpc_env / "run_jobs")
    cfg = yaml.safe_load((dagster_home / "dagster.yaml").read_text())
    cfg["run_retries"] = {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(cfg))
    with dg.DagsterInstance.get() as instance:  # create the SQLite storage before the daemon
        instance.get_runs(limit=1)
    return hpc_env


DAYS = 16


@pytest.fixture
def pipeline_daemon(launcher_env: Path, monkeypatch) -> Iterator[subprocess.Popen]:
    """A real dagster-daemon on the shipped code location (run monitoring and run retries)."""
    monkeypatch.setenv("HPCW_DATASETS", str(launcher_env / "no_datasets"))  # no sensors
    yield from run_daemon(launcher_env, "-m", "hpc_workflows")


def _launch_pipeline(tmp: Path, tags: dict[str, str]) -> str:
    """``dagster job launch`` of the shipped fetch_and_regrid on DAYS tiny local files, one per step."""
    from tests.batching.conftest import make_sources

    make_sources(tmp / "archive", DAYS)
    cfg = {
        "window": {"start": "2020-01-01", "end": f"2020-01-{DAYS:02d}", "step": "24h"},
        "source": {"template": str(tmp / "archive") + "/{dt:%Y%m%d}.nc", "retries": 0},
        "regrid": {"method": "conservative", "target": {"name": "global_10deg"},
                   "weights_dir": str(tmp / "weights")},
        "output": {"directory": str(tmp / "out"), "name": "tas"},
        "batching": {"files_per_step": 1, "files_in_flight": 1},
    }
    run_config = {"ops": {"fetch_and_regrid": {"config": cfg}},
                  "execution": {"config": {"cluster": {"local": {}}, "scale": 1}}}
    (tmp / "run.yaml").write_text(yaml.safe_dump(run_config))
    run_id = str(uuid.uuid4())
    out = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-m", "hpc_workflows", "-j", "fetch_and_regrid",
         "-c", str(tmp / "run.yaml"), "--run-id", run_id, "--tags", json.dumps(tags)],
        timeout=180, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return run_id


def _ledger(out: Path) -> list[dict]:
    from hpc_workflows.batching import LEDGER_NAME

    path = out / LEDGER_NAME
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def _kill_job_processes(job_id: str) -> None:
    """SIGKILL every process of the job at once: nothing of it reports (like a node failure)."""
    pids = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, check=True).stdout
    for pid in [int(line.split()[0]) for line in pids.splitlines()[1:] if line.split()]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
@pytest.mark.parametrize("lost_by", ["sigkill", "sigterm"])
def test_lost_coordinator_is_retried_as_a_batch_job_and_finished_files_are_not_redone(
    launcher_env: Path, pipeline_daemon, lost_by: str
):
    out = launcher_env / "out"
    run_id = _launch_pipeline(launcher_env, tags={"hpc_workflows/walltime": "00:08:00"})
    job_id = wait_until(lambda: _coordinator_running(run_id), 300, "the coordinator job to run")
    wait_until(lambda: len(_ledger(out)) >= 2, 300, "two files complete", interval=0.1)
    if lost_by == "sigkill":
        # Like a node failure: nothing of the job reports; run monitoring fails the run.
        _kill_job_processes(job_id)
    else:
        # SIGTERM to every process of the job, as walltime and preemption send it (a plain
        # scancel by root would be the owner's own cancel here, which means stop): the
        # coordinator job arms the retry while the run tears itself down and records its failure.
        subprocess.run(["scancel", "--full", "--signal=TERM", job_id], check=True)
    wait_until(lambda: _run(run_id).is_finished, 60, "the run to be failed")
    parent = _run(run_id)
    assert parent.status.value == "FAILURE"
    assert parent.tags["dagster/will_retry"] == "true", _messages(run_id)
    assert f"The batch system lost the run's coordinator (batch job {job_id}:" in _messages(run_id)
    done = {row["name"]: row["mtime_ns"] for row in _ledger(out)}
    assert 2 <= len(done) < DAYS, "the kill came after the run had finished: make the run longer"

    retry_id = wait_until(lambda: _run(run_id).tags.get("dagster/auto_retry_run_id"), 60, "the retry run")
    retry_job = wait_until(lambda: _run(retry_id).tags.get(JOB_ID_TAG) not in (None, job_id) and
                           _run(retry_id).tags[JOB_ID_TAG], 120, "the retry's coordinator job")
    wait_until(lambda: _run(retry_id).is_finished, 420, "the retry run to finish", interval=1.0)
    retry = _run(retry_id)
    assert retry.status.value == "SUCCESS", _messages(retry_id)
    # A batch job of its own, with the original run's override tag; budget and strategy carried on.
    assert retry.tags["dagster/parent_run_id"] == run_id
    assert retry.tags["hpc_workflows/walltime"] == "00:08:00"
    assert retry.tags[BUDGET_TAG] == "1" and retry.tags["dagster/retry_strategy"] == "ALL_STEPS"
    assert "#SBATCH -t 00:08:00" in (launcher_env / "run_jobs" / f"dagster-run-{retry_id[:8]}.sh").read_text()
    assert f"Submitted the run's coordinator as slurm job {retry_job}" in _messages(retry_id)
    # Every output is there, written once: the files finished before the kill were not redone.
    rows = _ledger(out)
    names = [row["name"] for row in rows]
    assert sorted(set(names)) == sorted(f"tas_202001{d:02d}.nc" for d in range(1, DAYS + 1))
    for name, mtime_ns in done.items():
        assert names.count(name) == 1, name
        assert (out / name).stat().st_mtime_ns == mtime_ns, name
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["already_complete"] == len(done), summary
    assert summary["outputs_written"] == DAYS - len(done), summary
    import xarray as xr

    for name in set(names):  # the source of day d is 280 + 20 cos(lat) + d: regridding keeps the range
        day = int(name[len("tas_202001"):-3]) - 1
        with xr.open_dataset(out / name) as ds:
            tas = ds["tas"].values
        assert tas.size and (tas >= 280 + day - 0.01).all() and (tas <= 300 + day + 0.01).all(), name


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
def test_step_failure_is_not_retried(launcher_env: Path, daemon):
    import dagster as dg

    run_id = _launch(launcher_env, job="retry_skip_job")
    wait_until(lambda: _run(run_id).is_finished, 420, "the run to finish", interval=1.0)
    run = _run(run_id)
    assert run.status.value == "FAILURE"
    assert run.tags["dagster/failure_reason"] == "STEP_FAILURE"
    assert run.tags["dagster/will_retry"] == "false" and run.tags[BUDGET_TAG] == "1"
    # The retry daemon has seen the failure and said why it lets it be.
    wait_until(lambda: "Not retrying run since it failed due to an asset or op failure" in _messages(run_id),
               60, "the retry daemon to pass over the run", interval=1.0)
    with dg.DagsterInstance.get() as instance:
        children = [r for r in instance.get_runs() if r.tags.get("dagster/parent_run_id") == run_id]
    assert not children
    assert "dagster/auto_retry_run_id" not in _run(run_id).tags


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
def test_bad_retry_tag_is_refused_before_submission(launcher_env: Path):
    said, run_id = launch_refused(launcher_env, {"dagster/max_retries": "two"})
    assert "run tag dagster/max_retries: 'two' is not a whole number" in said
    run = _run(run_id)
    assert run.status.value == "FAILURE"
    # A config error comes back on every retry: the failed launch is not retried.
    assert run.tags["dagster/max_retries"] == "0" and run.tags.get("dagster/will_retry") == "false"
    assert not queue_jobs(f"dagster-run-{run_id[:8]}")


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
def test_owners_own_scancel_is_not_retried(launcher_env: Path):
    # The test runs as the jobs' owner: a plain scancel is "CANCELLED by <owner uid>" in the
    # accounting, which the coordinator reads at SIGTERM.
    out = launcher_env / "out"
    run_id = _launch_pipeline(launcher_env, tags={})
    job_id = wait_until(lambda: _coordinator_running(run_id), 300, "the coordinator job to run")
    wait_until(lambda: len(_ledger(out)) >= 1, 300, "a file complete", interval=0.1)
    subprocess.run(["scancel", job_id], check=True)
    wait_until(lambda: _run(run_id).is_finished, 60, "the run to be failed")
    run = _run(run_id)
    assert run.status.value == "FAILURE"
    assert f"batch job {job_id}: CANCELLED (by {OWNER}" in _messages(run_id)
    assert "cancelled by its owner, which means stop" in _messages(run_id)
    # What Dagster's retry daemon reads: no retry.
    assert run.tags["dagster/max_retries"] == "0" and run.tags["dagster/will_retry"] == "false"
