"""fetch_and_regrid with and without a ``fetch`` worker pool, on the SLURM testbed.

    python benchmarks/pools_bench.py                  # 40 tiny files, 10 per batch step
    python benchmarks/pools_bench.py --files 80 --per-step 20

Both runs process the same files (copies of one tiny 10 deg field regridded to 10 deg):

- ``one cluster``: the default cluster on partition ``debug`` (1 worker), one ``process_batch``
  step per batch (fetch and regrid pipelined, ``files_in_flight`` files on scratch);
- ``fetch pool``: the ``fetch`` pool on partition ``multi`` (1 worker on a namespace node) and
  the default cluster on ``debug`` (1 worker): ``fetch_batch`` then ``regrid_batch`` per batch.

Per run: wall time, the summed step times per op (a fetch step's includes its wait for
scratch) and when each op's first step started, and the most files on scratch at once
(``output.workdir`` polled every 10 ms from a thread), the figure the pool changes: a batch
waits on scratch between its two steps, at most two batches per compute worker
(``HandoffGate``). Needs the testbed (``bash ci/testbed/start.sh``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _ScratchWatch:
    """The most source folders present at once in a workdir (polled from a thread)."""

    def __init__(self, workdir: Path):
        self.workdir, self.most = workdir, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = sum(1 for p in self.workdir.iterdir() if not p.name.startswith("."))
            except FileNotFoundError:
                now = 0
            self.most = max(self.most, now)
            self._stop.wait(0.01)

    def __enter__(self) -> _ScratchWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _cluster(work: Path, **extra) -> dict:
    return {"queue": "debug", "interface": "lo", "cores": 1, "memory": "1GiB", "walltime": "00:20:00",
            "log_directory": str(work / "worker_logs"), **extra}


def _run(work: Path, name: str, n: int, per_step: int, pools: bool) -> dict:
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableJob

    from benchmarks.archive_bench import _archive

    folder, start, end = _archive(work, n)
    out = work / name
    workflow = {
        "window": {"start": start, "end": end, "step": "24h"},
        "source": {"template": str(folder) + "/{dt:%Y%m%d}.nc", "retries": 0},
        "regrid": {"method": "conservative", "target": {"name": "global_10deg"},
                   "weights_dir": str(work / name / "weights")},  # each run builds its own
        "output": {"directory": str(out), "name": "tas"},
        "batching": {"files_per_step": per_step, "files_in_flight": 2},
    }
    execution: dict = {"cluster": {"slurm": _cluster(work)}, "scale": 1, "worker_start_timeout": 300}
    if pools:
        execution["worker_pools"] = {"fetch": {"cluster": {"slurm": _cluster(
            work, queue="multi", interface="eth0", scheduler_interface="hpcwbr0")}, "scale": 1,
            "worker_start_timeout": 300}}
    recon = ReconstructableJob.for_module("hpc_workflows.definitions", "fetch_and_regrid_job")
    run_config = {"ops": {"fetch_and_regrid": {"config": workflow}}, "execution": {"config": execution}}
    with _ScratchWatch(out / ".work") as watch, dg.DagsterInstance.get() as instance:
        began = time.perf_counter()
        with dg.execute_job(recon, instance=instance, run_config=run_config, raise_on_error=False) as result:
            wall = time.perf_counter() - began
            records = instance.all_logs(result.run_id)
            ok = result.success
    starts: dict[str, float] = {}
    per_op: dict[str, float] = {}
    first: dict[str, float] = {}  # op -> seconds from the run's start to its first step's start
    run_start = min(r.timestamp for r in records)
    for r in records:
        event = r.dagster_event
        if event is None or not r.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[r.step_key] = r.timestamp
            first.setdefault(r.step_key.split(".")[-1].split("[")[0], r.timestamp - run_start)
        elif event.event_type_value == "STEP_SUCCESS" and r.step_key in starts:
            op = r.step_key.split(".")[-1].split("[")[0]
            per_op[op] = per_op.get(op, 0.0) + r.timestamp - starts[r.step_key]
    return {"name": name, "ok": ok, "wall": wall, "per_op": per_op, "first": first,
            "scratch_most": watch.most}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--per-step", type=int, default=10)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hpcw-pools-bench-"))
    try:
        from hpc_workflows.instance import ensure_dagster_home

        os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(work / "dagster_home"))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        os.chdir(work)
        rows = [_run(work, "one_cluster", args.files, args.per_step, pools=False),
                _run(work, "fetch_pool", args.files, args.per_step, pools=True)]
        load = os.getloadavg()
        print(f"{args.files} files, {args.per_step} per batch step, files_in_flight 2; "
              f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
        print(f"{'run':12} {'ok':>3} {'wall s':>7} {'scratch max':>11}  per op: step seconds summed "
              "(first step's start, s after the run's)")
        for row in rows:
            ops = ", ".join(f"{k} {v:.1f} ({row['first'][k]:.1f})" for k, v in sorted(row["per_op"].items()))
            print(f"{row['name']:12} {'yes' if row['ok'] else 'NO':>3} {row['wall']:7.1f} "
                  f"{row['scratch_most']:11d}  {ops}")
        return 0 if all(r["ok"] for r in rows) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
