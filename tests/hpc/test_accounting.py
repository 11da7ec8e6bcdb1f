"""Scheduler accounting and failure classes (issue 17 points 4 and 5) on the real SLURM testbed,
whose slurmdbd/MariaDB keep sacct's records and enforce associations (ci/testbed/start.sh).

Real jobs: one over its --mem (a python that allocates), one past a 1-minute walltime, one
cancelled with scancel, one whose code exits 3; a whole run whose worker jobs are summarised in
the event log and ``run_accounting.json``; and a run charged to an unknown account.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpc_workflows.hpc.accounting import JobUsage, pbs_usage, run_accounting, sacct_usage
from hpc_workflows.hpc.failures import RETRY_RULES, FailureClass
from hpc_workflows.hpc.worker_loss import job_fate

from .conftest import REPO, batch_cluster, run_test_job, wait_until
from .test_batches_slurm import _run as run_pipeline
from .test_rejected_worker_jobs import _execute

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("testbed")]

_FINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}


def _sbatch(tmp_path: Path, *args: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", "-p", "debug", "-o", str(tmp_path / "job-%j.out"), *args],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip().split(";")[0]


def _ended(job: str, timeout: float) -> JobUsage:
    return wait_until(lambda: (u := sacct_usage([job], wait=0).get(job)) and u.state in _FINAL and u,
                      timeout, f"job {job} to end in sacct")


def test_job_over_its_memory_is_an_oom_kill_with_its_peak(tmp_path: Path) -> None:
    # Touch every page: RSS, not just address space, must exceed the 100M the job asked for.
    grab = "x = bytearray(400 * 2**20); x[::4096] = b'a' * len(x[::4096]); import time; time.sleep(30)"
    job = _sbatch(tmp_path, "--mem=100M", "--time=00:05:00", "--wrap", f"{sys.executable} -c \"{grab}\"")
    usage = _ended(job, 180)
    assert usage.failure is FailureClass.OUT_OF_MEMORY, usage
    assert usage.max_rss and usage.req_mem == 100 * 2**20 and usage.max_rss > usage.req_mem, usage
    assert RETRY_RULES[usage.failure].retry is False
    fate = job_fate("slurm", job)  # what the event log says when such a worker is lost
    assert fate is not None and fate.failure is FailureClass.OUT_OF_MEMORY, fate
    assert "out of memory" in fate.reason and "failure class out_of_memory" in fate.reason, fate.reason


def test_cancelled_and_failing_jobs_are_killed_and_user_error(tmp_path: Path) -> None:
    cancelled = _sbatch(tmp_path, "--time=00:05:00", "--wrap", "sleep 300")
    failing = _sbatch(tmp_path, "--time=00:05:00", "--wrap", f"{sys.executable} -c 'raise SystemExit(3)'")
    wait_until(lambda: subprocess.run(["squeue", "-h", "-j", cancelled, "-o", "%T"], capture_output=True,
                                      text=True).stdout.strip() == "RUNNING", 120, "the job to run")
    # PBS path on the testbed's Torque-style qstat: it refuses -x, so qstat -f answers.
    pbs = pbs_usage([cancelled])[cancelled]
    assert pbs.source == "qstat" and pbs.state == "RUNNING" and pbs.node and pbs.cores == 1, pbs
    subprocess.run(["scancel", cancelled], check=True, timeout=30)
    killed, failed = _ended(cancelled, 120), _ended(failing, 120)
    assert killed.state == "CANCELLED" and killed.failure is FailureClass.KILLED, killed
    assert failed.exit_code == "3:0" and failed.failure is FailureClass.USER_ERROR, failed
    assert RETRY_RULES[FailureClass.USER_ERROR].retry is False
    assert RETRY_RULES[FailureClass.KILLED].retry is True
    assert killed.elapsed is not None and killed.queue_wait is not None and killed.cores == 1


def test_worker_side_measurement_agrees_with_sacct(tmp_path: Path) -> None:
    # What a worker reports of itself where the batch system keeps no accounting.
    code = ("import json, time; from hpc_workflows.hpc.accounting import worker_usage; "
            "x = bytearray(300 * 2**20); x[::4096] = b'a' * len(x[::4096]); t = time.process_time(); "
            "exec('while time.process_time() - t < 2: pass'); time.sleep(6); "
            f"open('{tmp_path}/report.json', 'w').write(json.dumps(worker_usage()))")
    job = _sbatch(tmp_path, "--mem=1G", "--time=00:05:00", f"--export=ALL,PYTHONPATH={REPO}",
                  "--wrap", f'{sys.executable} -c "{code}"')
    sched = _ended(job, 180)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["job_id"] == job and sched.failure is None, (report, sched)
    assert 300 * 2**20 < report["max_rss"] < 600 * 2**20 and sched.max_rss, (report, sched)
    assert abs(report["max_rss"] - sched.max_rss) < 100 * 2**20, (report, sched)
    assert 2 <= report["cpu_time"] < 10 and report["elapsed"] >= 8 and report["startup"] >= 0, report
    # Used when the scheduler does not know the job (no accounting database, job forgotten).
    fallback = run_accounting("none", [job], [report]).jobs[0]
    assert fallback.source == "worker" and fallback.max_rss == report["max_rss"], fallback
    assert fallback.cpu_efficiency is not None and 0 < fallback.cpu_efficiency <= 1, fallback


@pytest.mark.slow
def test_job_past_its_walltime_is_walltime(tmp_path: Path) -> None:
    job = _sbatch(tmp_path, "--time=00:01:00", "--wrap", "sleep 600")
    usage = _ended(job, 300)  # SLURM checks time limits every 30 s or so
    assert usage.state == "TIMEOUT" and usage.failure is FailureClass.WALLTIME, usage
    assert usage.elapsed is not None and usage.elapsed >= 60, usage
    assert RETRY_RULES[FailureClass.WALLTIME].retry is True


@pytest.mark.slow
def test_a_run_reports_its_worker_jobs_accounting(hpc_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCWF_TEST_FAN", "2")
    monkeypatch.setenv("HPCWF_TEST_STEP_SECONDS", "2")
    ok, records, run_id = run_test_job("fan_job", {
        "cluster": {"slurm": batch_cluster(hpc_env, account="hpcw")}, "scale": 1,
        "worker_start_timeout": 180})
    assert ok
    events = [r.dagster_event for r in records if r.dagster_event
              and (r.dagster_event.message or "").startswith("Worker job accounting:")]
    assert len(events) == 1, [r.dagster_event.message for r in records if r.dagster_event]
    meta = events[0].event_specific_data.metadata
    path = Path(meta["accounting_file"].value)
    assert path.stat().st_mode & 0o077 == 0  # owner only
    report = json.loads(path.read_text())
    assert report["run_id"] == run_id and report["jobs"], report
    for job in report["jobs"]:
        # The scheduler's figures for every worker job of this run, and start-up from the worker.
        assert job["source"] == "sacct" and job["state"] in _FINAL, job
        assert job["elapsed"] > 0 and job["cores"] == 1 and job["core_hours"] > 0, job
        assert job["cpu_time"] > 0 and job["max_rss"] > 0 and job["queue_wait"] is not None, job
        assert job["failure"] is None, job  # cancelled by the run's own teardown: not a loss
    assert any(job["startup"] is not None for job in report["jobs"]), report
    assert report["totals"]["jobs"] == len(report["jobs"])
    assert "| job | state |" in meta["accounting"].value
    names = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(j["job_id"] for j in report["jobs"]),
                            "-o", "JobName,Account"], capture_output=True, text=True, check=True).stdout
    assert set(names.split()) == {f"dagster-{run_id[:8]}|hpcw"}, names


@pytest.mark.slow
def test_unknown_account_is_refused_naming_the_field(hpc_env: Path) -> None:
    out = _execute(hpc_env, "slurm", account="no_such_account")  # asserts the run failed
    assert "Invalid account" in out and "change execution.config.cluster.slurm.account" in out, out[-4000:]
    # Nothing of the run was queued: SLURM knows no job of its name.
    run = re.search(r"Run ([0-9a-f]{8})-[0-9a-f-]+ resulted in failure", out)
    assert run, out[-3000:]
    jobs = subprocess.run(["sacct", "-n", "-X", "-P", "--name", f"dagster-{run.group(1)}", "-S", "now-1hour",
                           "-o", "JobID"],
                          capture_output=True, text=True, check=True).stdout
    assert jobs.strip() == "", jobs



@pytest.mark.slow
def test_pipeline_run_writes_accounting_next_to_run_summary(hpc_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the demo's manifest path is relative to the repository
    cfg = copy.deepcopy(yaml.safe_load((REPO / "configs" / "dev.yaml").read_text()))
    cfg["ops"]["fetch_and_regrid"]["config"]["output"]["directory"] = str(hpc_env / "out")
    cfg["execution"] = {"config": {"cluster": {"slurm": batch_cluster(hpc_env)}, "scale": 1}}
    ok, records, run_id = run_pipeline(cfg)
    assert ok
    summary = json.loads((hpc_env / "out" / "run_summary.json").read_text())
    accounting = json.loads((hpc_env / "out" / "run_accounting.json").read_text())
    assert summary["run_id"] == accounting["run_id"] == run_id
    assert accounting["jobs"] and all(j["source"] == "sacct" and j["elapsed"] > 0 for j in accounting["jobs"])


def _run_hog(hpc_env: Path, monkeypatch: pytest.MonkeyPatch, hold: int, allowed_failures: int, **cluster):
    """hog_job (accounting_jobs.py): one step touching 1500 MiB for ``hold`` s on SLURM workers."""
    import dagster as dg
    import dask
    from dagster._core.definitions.reconstruct import ReconstructableJob

    monkeypatch.setenv("HPCWF_TEST_HOG_MB", "1500")
    monkeypatch.setenv("HPCWF_TEST_HOG_SECONDS", str(hold))
    # Dask's nanny would kill the worker itself at 95% of its limit, inside a job that goes on
    # running; off here, so that the batch system's memory enforcement is what ends the job.
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE", "False")
    recon = ReconstructableJob.for_file(str(Path(__file__).with_name("accounting_jobs.py")), "hog_job")
    execution = {"cluster": {"slurm": batch_cluster(hpc_env, **cluster)}, "scale": 1, "worker_start_timeout": 180}
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        with dg.DagsterInstance.get() as instance:
            with dg.execute_job(recon, instance=instance, run_config={"execution": {"config": execution}},
                                raise_on_error=False) as result:
                records = instance.all_logs(result.run_id)
    messages = [r.dagster_event.message if r.dagster_event else r.user_message for r in records]
    return result, records, messages


@pytest.mark.slow
def test_worker_killed_for_memory_is_an_oom_in_the_event_log(hpc_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, records, messages = _run_hog(hpc_env, monkeypatch, hold=30, allowed_failures=0, memory="1GiB")
    assert not result.success
    lost = [m for m in messages if m and "was on worker" in m]
    assert lost and "failure class out_of_memory" in lost[0] and "out of memory" in lost[0], messages
    events = [r.dagster_event for r in records if r.dagster_event
              and (r.dagster_event.message or "").startswith("Worker job accounting:")]
    assert events and events[0].event_specific_data.metadata["failure_classes"].value.get("out_of_memory"), messages


@pytest.mark.slow
def test_oom_killed_step_reruns_with_memory_on_oom_retry(hpc_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, _, messages = _run_hog(hpc_env, monkeypatch, hold=15, allowed_failures=1,
                                   memory="1GiB", memory_on_oom_retry="3GiB")
    assert result.success, messages
    lost = [m for m in messages if m and "was on worker" in m]
    assert len(lost) == 1 and "ask for 3GiB (memory_on_oom_retry)" in lost[0], lost
    jobs = subprocess.run(["sacct", "-n", "-X", "-P", "--name", f"dagster-{result.run_id[:8]}", "-o", "State,ReqMem"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert jobs[0].startswith("FAILED|1") and any(j.endswith("|3G") for j in jobs[1:]), jobs
