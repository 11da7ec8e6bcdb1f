"""Executor overhead: 50-step fan-outs (1 -> 48 -> 1) on three executors, in one run.

    python benchmarks/executor_bench.py              # everything, incl. SLURM first step
    python benchmarks/executor_bench.py --no-slurm --repeat 1

Each run is a whole process, ``dagster job execute -m benchmarks.executor_jobs.<x> -j <job>``,
as a user runs it, against a fresh persistent DAGSTER_HOME (SQLite, Dagster's default).
Executors: our ``hpc_dask_executor`` and dagster-dask's ``dask_executor``, each on a local
cluster of 2 workers x 1 thread, and Dagster's ``in_process``. Two jobs:

- ``trivial``: the 48 steps square an int: the wall time is all overhead;
- ``work``: each of the 48 steps also spends ~0.3 s in single-core Python, standing in for
  a step that computes: in_process has one core, the clusters two.

Overhead per step = (wall - wall of a one-op in_process job) / 50, the measure behind the
issue's reference figure (dagster-dask ~0.44 s/step: (31.5 s - 9.5 s) / 50). The goal
(issue 5): <= 0.1 s per step and a total no worse than in_process.

Also printed, to separate our executor's share from Dagster's: the time Dagster itself needs
to run one step of a run outside the orchestrator (``run_step``, what every worker executes,
called here in this process: plan, resources, compute-log capture, ~11 events written to the
run's SQLite event log), and on the SLURM testbed (if ``sinfo`` answers) the seconds from run
start to the first step running inside a worker job.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LOCAL_2X1 = {"cluster": {"local": {"threads_per_worker": 1}}, "scale": 2}
CANDIDATES = {  # row label: (job module, execution config)
    "hpc_dask_executor (ours, local 2x1)": ("ours", LOCAL_2X1),
    "dagster-dask dask_executor (local 2x1)": (
        "dagster_dask_jobs", {"cluster": {"local": {"n_workers": 2, "threads_per_worker": 1}}}),
    "in_process": ("in_process", None),
}


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, DAGSTER_HOME=str(home), DAGSTER_TELEMETRY_DISABLED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _execute(module: str, job: str, execution: dict | None, home: Path, work: Path) -> float:
    """Wall seconds of one ``dagster job execute`` process (raises if the run fails)."""
    import yaml

    config = work / f"{module}-{job}.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": execution}} if execution else {}))
    started = time.perf_counter()
    proc = subprocess.run(
        [DAGSTER, "job", "execute", "-m", f"benchmarks.executor_jobs.{module}", "-j", job,
         "-c", str(config)],
        cwd=ROOT, env=_env(home), capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0 or "RUN_SUCCESS" not in proc.stdout + proc.stderr:
        raise RuntimeError(f"{module}.{job} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return wall


def _dagster_step_seconds(home: Path, steps: int = 12) -> float:
    """Mean seconds of ``run_step`` (what a worker runs per step) called in this process."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableJob
    from dagster._core.execution.api import create_execution_plan
    from dagster._core.execution.retries import RetryMode

    from hpc_workflows.hpc.worker_step import run_step

    recon = ReconstructableJob.for_module("benchmarks.executor_jobs.in_process", "trivial")
    # Dagster's console logger prints every event to stderr: keep the table readable.
    with dg.DagsterInstance.from_config(str(home)) as instance, \
            contextlib.redirect_stderr(io.StringIO()):
        plan = create_execution_plan(recon)
        run = instance.create_run_for_job(job_def=recon.get_definition(), execution_plan=plan)
        ref = instance.get_ref()
        run_step(recon, run, {}, "start", ref, RetryMode.DISABLED, None, None)
        run_step(recon, run, {}, "square_0", ref, RetryMode.DISABLED, None, None)  # warm
        started = time.perf_counter()
        for i in range(1, steps + 1):
            run_step(recon, run, {}, f"square_{i}", ref, RetryMode.DISABLED, None, None)
        return (time.perf_counter() - started) / steps


def _slurm_first_step(home: Path, work: Path, repeat: int) -> list[float]:
    """Run start -> first STEP_START inside a SLURM worker job, from the run's own events."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableJob

    recon = ReconstructableJob.for_module("benchmarks.executor_jobs.ours", "first_step")
    execution = {"cluster": {"slurm": {"queue": "debug", "interface": "lo", "memory": "1GiB",
                                       "walltime": "00:10:00",
                                       "log_directory": str(work / "logs")}},
                 "scale": 1}
    secs = []
    with dg.DagsterInstance.from_config(str(home)) as instance, \
            contextlib.redirect_stderr(io.StringIO()):
        for _ in range(repeat):
            with dg.execute_job(recon, instance=instance,
                                run_config={"execution": {"config": execution}}) as result:
                assert result.success, "SLURM first_step run failed"
                records = instance.all_logs(result.run_id)
            t0 = records[0].timestamp
            t1 = next(r.timestamp for r in records
                      if r.dagster_event and r.dagster_event.event_type_value == "STEP_START")
            secs.append(t1 - t0)
    return secs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs per cell (median shown)")
    parser.add_argument("--no-slurm", action="store_true", help="skip the SLURM first-step row")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="executor_bench_"))
    try:
        home = work / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        one: list[float] = []
        walls: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):  # interleaved, so machine load hits every row alike
            one.append(_execute("in_process", "one", None, home, work))
            for label, (module, execution) in CANDIDATES.items():
                for job in ("trivial", "work"):
                    walls.setdefault((label, job), []).append(
                        _execute(module, job, execution, home, work))
        base = statistics.median(one)
        step = _dagster_step_seconds(home)
        print(f"\n50-step fan-outs (1 -> 48 -> 1), whole `dagster job execute` processes, "
              f"median of {args.repeat}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}")
        print(f"one-op in_process job (fixed cost of `dagster job execute`): {base:.2f} s")
        print(f"{'executor':40} {'job':8} {'wall s':>7} {'overhead s/step':>16} "
              f"{'vs in_process':>14}")
        for (label, job), values in walls.items():
            wall = statistics.median(values)
            ref = statistics.median(walls[("in_process", job)])
            per_step = (wall - base) / 50
            print(f"{label:40} {job:8} {wall:7.2f} {per_step:16.3f} {wall / ref:13.2f}x")
        print(f"\nDagster's own cost of one step run outside the orchestrator (run_step, "
              f"called in this process, no Dask): {step:.3f} s")
        if not args.no_slurm and shutil.which("sinfo") and subprocess.run(
                ["sinfo", "-h"], capture_output=True, timeout=15).returncode == 0:
            secs = _slurm_first_step(home, work, args.repeat)
            print(f"SLURM testbed: run start -> first step running in a worker job (TLS on): "
                  f"median {statistics.median(secs):.1f} s of {[round(s, 1) for s in secs]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
