"""PBS-style submission, TLS, concurrent runs on one scheduler, dask inside a step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client
from distributed.security import Security

from hpc_workflows.hpc.clusters import open_cluster
from hpc_workflows.hpc.settings import validate_executor_settings

from .conftest import JOBS_FILE, batch_cluster, event_messages, queue_jobs, run_test_job, wait_until


@pytest.mark.pbs
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
def test_pbs_cluster_runs_steps_in_qsub_jobs_with_logs_in_log_directory(hpc_env: Path, monkeypatch):
    monkeypatch.setenv("HPCWF_TEST_FAN", "2")
    ok, records, run_id = run_test_job("fan_job", {"cluster": {"pbs": batch_cluster(hpc_env)}, "scale": 1})
    assert ok, event_messages(records)
    results = json.loads((hpc_env / "out.json").read_text())["results"]
    assert all(r["pbs_jobid"] for r in results), "steps did not run in PBS jobs"
    logs = sorted(p.name for p in (hpc_env / "worker_logs").iterdir())
    assert any(n.startswith(f"dagster-{run_id[:8]}.o") for n in logs), logs
    # Not in the submitter's working directory, where qsub would put them by default.
    assert not list(hpc_env.glob("*.o[0-9]*")) and not list(hpc_env.glob("*.e[0-9]*"))
    qstat = subprocess.run(["qstat"], capture_output=True, text=True, timeout=30).stdout
    assert f"dagster-{run_id[:8]}" not in qstat or all(
        " C " in line or " E " in line for line in qstat.splitlines() if run_id[:8] in line
    )


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
def test_tls_scheduler_refuses_plain_and_foreign_clients(hpc_env: Path):
    settings = validate_executor_settings({"cluster": {"slurm": batch_cluster(hpc_env)}, "scale": 1})
    rc = open_cluster(settings, "dagster-tlstest")
    try:
        wait_until(lambda: rc.worker_count() >= 1, 120, "a TLS worker to connect")
        address = rc.cluster.scheduler_address
        assert address.startswith("tls://")
        # Another user's client: plain TCP, and TLS with credentials of its own.
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout="3s", set_as_default=False)
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=Security.temporary(), timeout="3s", set_as_default=False)
        assert rc.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    finally:
        rc.close()
    wait_until(lambda: not queue_jobs("dagster-tlstest"), 30, "the worker job to go")


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("testbed")
def test_two_concurrent_runs_on_one_existing_cluster_stay_isolated(hpc_env: Path, tmp_path: Path):
    # One scheduler + 2 SLURM workers, shared by two runs of the same job started together.
    shared = validate_executor_settings(
        {"cluster": {"slurm": batch_cluster(hpc_env, tls=False)}, "scale": 2}
    )
    rc = open_cluster(shared, "dagster-shared")
    try:
        wait_until(lambda: rc.worker_count() >= 2, 120, "two shared workers")
        config = tmp_path / "existing.yaml"
        config.write_text(json.dumps(
            {"execution": {"config": {"cluster": {"existing": {"address": rc.cluster.scheduler_address}}}}}
        ))
        # Create the SQLite instance once: two processes migrating a fresh DAGSTER_HOME at the
        # same moment race (alembic), a cousin of the SQLite-on-shared-FS caveat.
        import dagster as dg

        with dg.DagsterInstance.get():
            pass
        dagster = str(Path(sys.executable).with_name("dagster"))
        procs = []
        for n in (1, 2):
            env = dict(os.environ, HPCWF_TEST_FAN="4", HPCWF_TEST_STEP_SECONDS="1")
            procs.append(subprocess.Popen(
                [dagster, "job", "execute", "-f", str(JOBS_FILE), "-j", "fan_job", "-c", str(config)],
                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))
        outs = [p.communicate(timeout=300)[0] for p in procs]
        for p, out in zip(procs, outs):
            assert p.returncode == 0, out[-3000:]
    finally:
        rc.close()
    runs = [json.loads(p.read_text()) for p in sorted(hpc_env.glob("collect-*.json"))]
    assert len(runs) == 2 and runs[0]["run_id"] != runs[1]["run_id"]
    for run in runs:
        # Every result a run collected was computed for that run, none for the other.
        assert sorted(r["i"] for r in run["results"]) == [0, 1, 2, 3]
        assert {r["run_id"] for r in run["results"]} == {run["run_id"]}
        assert all(r["slurm_job_id"] for r in run["results"])


@pytest.mark.slow
def test_dask_compute_inside_a_step_stays_on_its_worker(hpc_env: Path):
    ok, records, _ = run_test_job(
        "dask_in_step_job", {"cluster": {"local": {"threads_per_worker": 2}}, "scale": 1}
    )
    assert ok, event_messages(records)
    info = json.loads((hpc_env / "out.json").read_text())
    assert info["total"] == 64 * 64
    assert info["scheduler"] == "threads"  # a local threaded scheduler, not the run's cluster
    assert info["step_threads"] == 2
    assert 1 <= info["threads_used"] <= 2  # never more threads than the worker has
