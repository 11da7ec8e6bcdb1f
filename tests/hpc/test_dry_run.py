"""``hpc-workflows plan CONFIG``: the dry run counts by the ledger rule, estimates from history,
prints the worker job script, and submits nothing (checked with squeue on the testbed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpc_workflows.hpc.dry_run import format_plan, make_plan

from .conftest import REPO, batch_cluster

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _config(tmp_path: Path, execution: dict[str, Any] | None = None) -> Path:
    """configs/dev.yaml with its outputs (and scratch) under tmp_path."""
    cfg = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    wf = cfg["ops"]["fetch_and_regrid"]["config"]
    wf["source"]["manifest"] = str(REPO / "configs" / "sample_manifest.yaml")
    wf["output"]["directory"] = str(tmp_path / "out")
    wf["output"]["workdir"] = str(tmp_path / "scratch")
    wf["output"]["check_area_means"] = False
    if execution is not None:
        cfg["execution"]["config"] = execution
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_counts_follow_the_outputs_written(tmp_path: Path) -> None:
    from hpc_workflows.batching import process_file
    from hpc_workflows.config import validate_workflow_config
    from hpc_workflows.pipeline.settings import batch_job, planned_sources

    path = _config(tmp_path)
    plan = make_plan(path)
    assert (plan.files, plan.complete, plan.todo, plan.batches) == (2, 0, 2, 2)
    out = tmp_path / "out"
    assert sorted(p.name for p in plan.outputs) == [
        "tas_north_america_2p5deg_A1B.nc", "tas_north_america_2p5deg_E1.nc"]
    assert all(p.parent == out for p in plan.outputs)
    assert plan.job_scripts == {} and plan.history is None and plan.estimate is None
    assert "no history" in format_plan(plan)

    # Write one file's output for real (fetch, regrid, verify, ledger entry): the plan follows.
    cfg = validate_workflow_config(
        yaml.safe_load(path.read_text())["ops"]["fetch_and_regrid"]["config"])
    source = next(s for s in planned_sources(cfg) if s.key == "E1")
    assert process_file(source, batch_job(cfg)).status == "written"
    plan = make_plan(path)
    assert (plan.files, plan.complete, plan.todo) == (2, 1, 1)
    assert [p.name for p in plan.outputs] == ["tas_north_america_2p5deg_A1B.nc"]
    assert not (out / "run_summary.json").exists()  # nothing written by the plan itself


def _history(out: Path, seconds: float, files: int, max_rss: int | None,
             failures: dict[str, int] | None = None) -> None:
    """A run_summary.json (and run_accounting.json) shaped as a run writes them."""
    out.mkdir(parents=True, exist_ok=True)
    results = [{"key": f"k{i}", "status": "written", "seconds": seconds, "outputs": [],
                "fetch": {"skipped": False, "bytes": 1, "seconds": 1.0}} for i in range(files)]
    results.append({"key": "done", "status": "complete", "seconds": 0.0, "outputs": [],
                    "fetch": {"skipped": True, "bytes": 0, "seconds": 0.0}})
    (out / "run_summary.json").write_text(json.dumps({"results": results}))
    if max_rss is not None:
        (out / "run_accounting.json").write_text(json.dumps({
            "jobs": [{"startup": 4.0}, {"startup": 6.0}],
            "totals": {"core_hours": 0.5, "max_rss": max_rss, "failures": failures or {},
                       "queue_wait_mean": 10.0}}))


def test_estimate_and_warnings_from_history(tmp_path: Path) -> None:
    execution = {"cluster": {"slurm": batch_cluster(tmp_path, walltime="00:05:00")}, "scale": 2}
    path = _config(tmp_path, execution)
    _history(tmp_path / "out", seconds=600.0, files=4, max_rss=int(1.5 * 2**30),
             failures={"out_of_memory": 1})
    plan = make_plan(path)
    assert plan.history is not None and plan.history.files_written == 4
    assert plan.history.seconds_per_file == pytest.approx(600.0)
    assert plan.estimate is not None
    # 10 s queue + 5 s start-up, then 2 files x 600 s over 2 workers; core-hours from the last
    # run's: 0.5 / 4 files x 2 files.
    assert plan.estimate.wall_seconds == pytest.approx(615.0)
    assert plan.estimate.core_hours == pytest.approx(0.25)
    text = "\n".join(plan.warnings)
    assert "execution.config.cluster.slurm.walltime" in text
    assert "execution.config.cluster.slurm.memory" in text and "1.50 GiB" in text
    assert "out of memory" in text

    # Short files and a small peak: no warnings, the estimate scales with the history.
    _history(tmp_path / "out", seconds=3.0, files=4, max_rss=2**28)
    plan = make_plan(path)
    assert plan.warnings == [] and plan.estimate.wall_seconds == pytest.approx(18.0)


def test_job_script_is_dask_jobqueues_and_leaves_no_trace(tmp_path: Path) -> None:
    execution = {"cluster": {"slurm": batch_cluster(tmp_path, walltime="00:07:00",
                                                    account="proj1", memory="3GiB")}, "scale": 1}
    plan = make_plan(_config(tmp_path, execution))
    kind, script = plan.job_scripts[""]
    assert kind == "slurm"
    for line in ("#SBATCH -t 00:07:00", "#SBATCH -p debug", "#SBATCH -A proj1", "#SBATCH --mem=3G",
                 "distributed.cli.dask_worker tls://<scheduler>:<port>", "--tls-key"):
        assert line in script, (line, script)
    assert "BEGIN" not in script  # no key material, only placeholders
    assert not (tmp_path / "worker_logs").exists()  # dask-jobqueue made it; the plan removed it


def test_invalid_config_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("ops: {fetch_and_regrid: {config: {window: {start: x}}}}\n")
    done = subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "plan", str(path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 1
    assert "window.start" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slurm
def test_plan_submits_nothing(testbed: None, tmp_path: Path) -> None:
    execution = {"cluster": {"slurm": batch_cluster(tmp_path)}, "scale": 2}
    path = _config(tmp_path, execution)

    def job_ids() -> set[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
        return set(out.split())

    def accounted() -> set[str]:  # jobs that started and ended already are gone from squeue
        out = subprocess.run(["sacct", "-n", "-X", "-o", "JobIDRaw", "-S", "now-10minutes"],
                             capture_output=True, text=True, timeout=30).stdout
        return set(out.split())

    before, before_acct = job_ids(), accounted()
    done = subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "plan", str(path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert "#SBATCH -p debug" in done.stdout and "2 to do" in done.stdout
    assert job_ids() - before == set()
    assert accounted() - before_acct == set()


def test_bytes_from_manifest_filesystem_and_bounded_head(tmp_path: Path) -> None:
    from tests.fetch.fault_server import FaultServer, sha256_hex

    local = tmp_path / "local.nc"
    local.write_bytes(b"x" * 700)
    bodies = {"/a.nc": b"a" * 1000, "/b.nc": b"b" * 2000, "/c.nc": b"c" * 4000}
    with FaultServer() as server:
        entries = [{"key": "local", "url": str(local), "checksum": f"sha256:{sha256_hex(b'x' * 700)}"}]
        for i, (name, body) in enumerate(sorted(bodies.items())):
            entry = {"key": name[1], "url": server.add(name, body),
                     "checksum": f"sha256:{sha256_hex(body)}"}
            if i == 0:
                entry["size"] = 5  # the manifest's size is used as written: no request for it
            entries.append(entry)
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(yaml.safe_dump({"sources": entries}))
        path = _config(tmp_path)
        cfg = yaml.safe_load(path.read_text())
        cfg["ops"]["fetch_and_regrid"]["config"]["source"]["manifest"] = str(manifest)
        path.write_text(yaml.safe_dump(cfg))

        plan = make_plan(path)  # no HEAD asked: manifest and local sizes only
        assert (plan.bytes_known, plan.files_size_unknown) == (705, 2)
        assert server.requests() == []
        plan = make_plan(path, head=1)  # one URL asked, not two
        assert (plan.bytes_known, plan.files_size_unknown) == (2705, 1)
        assert {r.path for r in server.requests()} == {"/b.nc"}
        server.hold = 5.0  # a server that does not answer: each request gives up after 1 s
        started = time.monotonic()
        plan = make_plan(path, head=5, head_timeout=1.0)
        assert time.monotonic() - started < 4.5
        assert (plan.bytes_known, plan.files_size_unknown) == (705, 2)
        server.hold = 0
        plan = make_plan(path, head=5, head_timeout=1.0)
        assert (plan.bytes_known, plan.files_size_unknown) == (6705, 0)
        # This server has no HEAD: one byte asked by range instead (its body is never read).
        assert {r.range for r in server.requests()} == {"bytes=0-0"}


def test_a_script_per_batch_pool(tmp_path: Path) -> None:
    execution = {"cluster": {"local": {"threads_per_worker": 1}}, "scale": 1,
                 "worker_pools": {"fetch": {"cluster": {"slurm": batch_cluster(
                     tmp_path, queue="movers", walltime="00:20:00")}, "scale": 1}}}
    plan = make_plan(_config(tmp_path, execution))
    assert list(plan.job_scripts) == ["fetch"]
    kind, script = plan.job_scripts["fetch"]
    assert kind == "slurm" and "#SBATCH -p movers" in script and "#SBATCH -t 00:20:00" in script
    assert "slurm worker job script of pool fetch" in format_plan(plan)
