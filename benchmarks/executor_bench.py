"""Executor overhead: a 50-step fan-out job (1 -> 48 -> 1, static) on three executors, same run.

    python benchmarks/executor_bench.py            # local executors + SLURM submit-to-first-step
    python benchmarks/executor_bench.py --no-slurm

Rows: our ``hpc_dask_executor`` on a local cluster (2 workers x 1 thread), dagster-dask's
``dask_executor`` on the same local cluster shape, and Dagster's ``in_process`` executor. The
steps are trivial, so wall time is executor overhead. "per step" is (wall - in_process wall)/50
plus in_process's own per-step time, i.e. wall/50. Then, on the SLURM testbed (if ``sinfo``
answers): seconds from run start to the first step starting inside a worker job.
Goal (issue 5): <= 0.1 s overhead per step, total no worse than in_process.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster_dask import dask_executor

from hpc_workflows.hpc.executor import hpc_dask_executor

N_FAN = 48  # + fan_out + gather = 50 steps


# A static fan-out: dagster-dask's executor plans steps by level up front and silently runs
# none of a dynamic (.map) fan-out's steps (the run "succeeds" after the first op), while
# hpc_dask_executor handles dynamic outputs, which the production pipeline uses.
@dg.op
def start() -> int:
    return 2


@dg.op
def square(x: int) -> int:
    return x * x


@dg.op(ins={"values": dg.In(list)})
def gather(values: list) -> int:
    return sum(values)


@dg.graph
def fan_graph():
    x = start()
    gather([square.alias(f"square_{i}")(x) for i in range(N_FAN)])


ours_job = fan_graph.to_job(name="ours_job", executor_def=hpc_dask_executor)
dagster_dask_job = fan_graph.to_job(name="dagster_dask_job", executor_def=dask_executor)
in_process_job = fan_graph.to_job(name="in_process_job", executor_def=dg.in_process_executor)


@dg.op
def first_step() -> int:
    return 1


@dg.job(executor_def=hpc_dask_executor)
def one_step_job():
    first_step()


CASES = {
    "hpc_dask_executor (ours, local 2x1)": (
        "ours_job", {"cluster": {"local": {"threads_per_worker": 1}}, "scale": 2}
    ),
    "dagster-dask dask_executor (local 2x1)": (
        "dagster_dask_job", {"cluster": {"local": {"n_workers": 2, "threads_per_worker": 1}}}
    ),
    "in_process": ("in_process_job", {}),
}


def _run(job_name: str, execution: dict, home: Path) -> tuple[float, dict]:
    recon = ReconstructableJob.for_file(__file__, job_name)
    run_config = {"execution": {"config": execution}} if execution else {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        started = time.perf_counter()
        with dg.execute_job(recon, instance=instance, run_config=run_config) as result:
            wall = time.perf_counter() - started
            assert result.success, f"{job_name} failed"
            records = instance.all_logs(result.run_id)
    return wall, {"records": records}


def _first_step_seconds(records) -> float:
    """Run start -> first STEP_START, from the run's own event timestamps."""
    t0 = records[0].timestamp  # the run's first event (run start)
    t1 = next(r.timestamp for r in records if r.dagster_event and r.dagster_event.event_type_value == "STEP_START")
    return t1 - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs per executor (median shown)")
    parser.add_argument("--no-slurm", action="store_true", help="skip the SLURM submit-to-first-step row")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="executor_bench_"))
    try:
        home = work / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        walls: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(args.repeat):  # interleaved so machine load hits all rows alike
            for name, (job_name, execution) in CASES.items():
                walls[name].append(_run(job_name, execution, home)[0])

        base = statistics.median(walls["in_process"])
        print(f"\n50-step fan-out job (1 -> {N_FAN} -> 1), median of {args.repeat}, 2-core machine")
        print(f"{'executor':42} {'wall s':>8} {'s/step':>8} {'vs in_process':>14}")
        for name, values in walls.items():
            wall = statistics.median(values)
            print(f"{name:42} {wall:8.2f} {wall / 50:8.3f} {wall / base:13.2f}x")

        if not args.no_slurm and shutil.which("sinfo") and subprocess.run(
            ["sinfo", "-h"], capture_output=True, timeout=15
        ).returncode == 0:
            execution = {
                "cluster": {"slurm": {"queue": "debug", "interface": "lo", "memory": "1GiB",
                                      "walltime": "00:10:00", "log_directory": str(work / "logs")}},
                "scale": 1,
            }
            secs = []
            for _ in range(args.repeat):
                _, info = _run("one_step_job", execution, home)
                secs.append(_first_step_seconds(info["records"]))
            print(f"\nSLURM testbed: run start -> first step running in a worker job (TLS on): "
                  f"median {statistics.median(secs):.1f} s of {[round(s, 1) for s in secs]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
