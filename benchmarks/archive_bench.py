"""Archive-sized runs (issue 13): fetch_and_regrid over 100, 1,000, 10,958 tiny files.

    python benchmarks/archive_bench.py                       # 100 and 1000 files, local (+ SLURM)
    python benchmarks/archive_bench.py --sizes 100 1000 10958 --old-sizes 100

Each run is a whole ``dagster job execute -m hpc_workflows -j fetch_and_regrid`` process, as a
user runs it, against a fresh persistent DAGSTER_HOME (SQLite). The files are tiny (a 10 deg
global field, one step, regridded to 30 deg), so orchestration dominates. Per size and cluster:

- wall: the first run; overhead per file = (wall - loop / workers) / files, where loop is the
  same per-file work (``hpc_workflows.batching.process_file``: fetch, regrid, write, verify,
  record) in a plain Python loop in this process, timed on up to 200 files and scaled to all;
  ``cpu ovh``: the same in CPU seconds (run: the process and its local workers; loop: this
  process), which the load of a shared machine distorts far less than wall time;
- coordinator and worker peak RSS (VmHWM of the ``dagster`` process and of its descendants);
- planning (the plan step's own figure from run_summary.json);
- history: bytes the run added to DAGSTER_HOME per file;
- re-run: a second run with everything complete, its wall as a share of the first, and
  whether it started a Dask cluster (it must not: no worker job).

``--complete-only N``: a re-run over N placeholder outputs recorded complete in the ledger
(planning, summary, coordinator memory and re-run time at 10,958 files without the work).
``--old-sizes``: the old per-file design (one Dagster step per file) on in_process and
dagster-dask's executor (2 local workers), at the sizes given (1,000 takes many minutes).
Goals: overhead <= 0.02 s/file, RSS <= 500 MiB and flat, planning <= 5 s at 10,958,
re-run <= 5 % of the first run with no worker job, history <= 2 KB/file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
WORKERS = 2
GOALS = "goals: overhead <= 0.02 s/file, RSS <= 500 MiB (flat), plan <= 5 s, re-run <= 5 %, history <= 2 KB/file"


def _tiny_source(path: Path) -> None:
    import numpy as np
    import xarray as xr

    lat = np.arange(-85.0, 90.0, 10.0)
    lon = np.arange(5.0, 360.0, 10.0)
    data = (280 + 20 * np.cos(np.radians(lat))[:, None] + 0 * lon).astype("float32")[None]
    xr.Dataset({"tas": (("time", "lat", "lon"), data, {"units": "K", "standard_name": "air_temperature"})},
               coords={"time": [np.datetime64("1990-01-01")],
                       "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
                       "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"})},
               ).to_netcdf(path)


def _archive(work: Path, n: int) -> tuple[Path, str, str]:
    """``n`` daily files from 1990-01-01 (copies of one tiny file), and the window end."""
    import datetime as dt

    folder = work / "archive"
    folder.mkdir(parents=True, exist_ok=True)
    proto = work / "proto.nc"
    if not proto.exists():
        _tiny_source(proto)
    start = dt.date(1990, 1, 1)
    for i in range(n):
        path = folder / f"{start + dt.timedelta(days=i):%Y%m%d}.nc"
        if not path.exists():
            shutil.copyfile(proto, path)
    return folder, start.isoformat(), (start + dt.timedelta(days=n - 1)).isoformat()


def _workflow(work: Path, n: int, out: Path) -> dict:
    folder, start, end = _archive(work, n)
    return {
        "window": {"start": start, "end": end, "step": "24h"},
        "source": {"template": str(folder) + "/{dt:%Y%m%d}.nc", "retries": 0},
        "regrid": {"method": "conservative", "target": {"kind": "global", "resolution": 30.0},
                   "weights_dir": str(work / "weights")},
        "output": {"directory": str(out), "name": "tas", "workdir": str(out.parent / f"{out.name}.scratch")},
        "subset_time": False,
    }


def _cluster(kind: str, work: Path) -> dict:
    if kind == "slurm":
        return {"cluster": {"slurm": {"queue": "debug", "interface": "lo", "cores": 1, "memory": "1GiB",
                                      "walltime": "01:00:00", "log_directory": str(work / "worker_logs")}},
                "scale": WORKERS}
    return {"cluster": {"local": {"threads_per_worker": 1}}, "scale": WORKERS}


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _execute(argv: list[str], env: dict[str, str]) -> dict:
    """Run one ``dagster job execute`` and watch the peak RSS of it and its descendants."""
    import psutil

    import resource

    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = {"coordinator": 0, "worker": 0}
    stop = threading.Event()

    def watch() -> None:
        parent = psutil.Process(proc.pid)
        while not stop.is_set():
            peaks["coordinator"] = max(peaks["coordinator"], _vm_hwm_kib(proc.pid))
            try:
                for child in parent.children(recursive=True):
                    peaks["worker"] = max(peaks["worker"], _vm_hwm_kib(child.pid))
            except psutil.Error:
                pass
            stop.wait(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = proc.communicate()[0]
    stop.set()
    watcher.join()
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU of the process and every descendant it waited for (local workers; not batch jobs).
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if proc.returncode != 0 or "RUN_SUCCESS" not in output:
        raise RuntimeError(f"{' '.join(argv[-4:])} failed:\n{output[-3000:]}")
    return {"wall": wall, "cpu": cpu, "coord_mib": peaks["coordinator"] / 1024, "worker_mib": peaks["worker"] / 1024,
            "cluster_started": "Dask cluster" in output}


def _env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, DAGSTER_HOME=str(home), DAGSTER_TELEMETRY_DISABLED="1", **(extra or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _home(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return path


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _loop_seconds_per_file(work: Path, n: int) -> tuple[float, float]:
    """The per-file work in a plain loop in this process (up to 200 files): wall and CPU
    seconds per file (the CPU figure is what a loaded, shared machine does not distort)."""
    from hpc_workflows.batching import Ledger, process_file
    from hpc_workflows.config import validate_workflow_config
    from hpc_workflows.pipeline.settings import batch_job, planned_sources

    out = work / f"loop_{n}"
    cfg = validate_workflow_config(_workflow(work, n, out))
    job = batch_job(cfg)
    sources = planned_sources(cfg)[: min(n, 200)]
    # One ledger for the loop, as a batch keeps one: without it every file re-reads the
    # whole ledger, which grows with the loop and would inflate the reference.
    ledger = Ledger(job.output_dir)
    process_file(sources[0], job, ledger)  # weights built once, imports warm: not per-file work
    started, cpu = time.perf_counter(), time.process_time()
    for source in sources[1:]:
        assert process_file(source, job, ledger).status == "written"
    files = max(1, len(sources) - 1)
    return (time.perf_counter() - started) / files, (time.process_time() - cpu) / files


def _batched(work: Path, n: int, kind: str, per_file: tuple[float, float]) -> dict:
    import yaml

    tag = f"{kind}_{n}"
    out = work / f"out_{tag}"
    home = _home(work / f"home_{tag}")
    cfg = {"ops": {"fetch_and_regrid": {"config": _workflow(work, n, out)}},
           "execution": {"config": _cluster(kind, work)}}
    path = work / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    argv = [DAGSTER, "job", "execute", "-m", "hpc_workflows", "-j", "fetch_and_regrid", "-c", str(path)]
    first = _execute(argv, _env(home))
    history = _du(home)
    summary = json.loads((out / "run_summary.json").read_text())
    again = _execute(argv, _env(home))
    return {
        "design": f"batches ({kind} {WORKERS}x1)", "files": n, "wall": first["wall"],
        "overhead": (first["wall"] - per_file[0] * n / WORKERS) / n,
        "cpu_overhead": (first["cpu"] - per_file[1] * n) / n if kind == "local" else None,
        # Batch-job workers are not our descendants: their RSS is not seen here.
        "coord_mib": first["coord_mib"], "worker_mib": first["worker_mib"] if kind == "local" else None,
        "plan_s": summary["planning_seconds"], "steps": summary["batch_steps"] + 2,
        "history_kb": history / n / 1024,
        "rerun": again["wall"] / first["wall"], "rerun_cluster": again["cluster_started"],
    }


def _old(work: Path, n: int, job: str, per_file: tuple[float, float]) -> dict:
    tag = f"{job}_{n}"
    out = work / f"out_{tag}"
    home = _home(work / f"home_{tag}")
    env = _env(home, {"HPCW_BENCH_WORKFLOW": json.dumps(_workflow(work, n, out)),
                      "HPCW_BENCH_WORKERS": str(WORKERS)})
    argv = [DAGSTER, "job", "execute", "-m", "benchmarks.executor_jobs.per_file", "-j", job]
    first = _execute(argv, env)
    workers = 1 if job.endswith("in_process") else WORKERS
    return {"design": f"per-file steps ({job.removeprefix('per_file_')})", "files": n, "wall": first["wall"],
            "overhead": (first["wall"] - per_file[0] * n / workers) / n,
            "cpu_overhead": (first["cpu"] - per_file[1] * n) / n,
            "coord_mib": first["coord_mib"],
            "worker_mib": first["worker_mib"] if job.endswith("dask") else None, "plan_s": None,
            "steps": n + 1, "history_kb": _du(home) / n / 1024, "rerun": None, "rerun_cluster": None}


def _complete_only(work: Path, n: int) -> dict:
    """A re-run over ``n`` files whose outputs the ledger says are complete (placeholders
    recorded through the real Ledger): planning, summary and coordinator memory at sizes too
    large to process on this machine. No file is fetched or regridded, no worker started."""
    import yaml

    from hpc_workflows.batching import Ledger
    from hpc_workflows.config import validate_workflow_config
    from hpc_workflows.pipeline.settings import batch_job, planned_sources

    out = work / f"out_complete_{n}"
    workflow = _workflow(work, n, out)
    cfg = validate_workflow_config(workflow)
    job = batch_job(cfg)
    ledger = Ledger(job.output_dir)
    job.output_dir.mkdir(parents=True, exist_ok=True)
    for source in planned_sources(cfg):
        for wanted in job.outputs_for(source).values():
            wanted.path.write_bytes(b"placeholder")
            ledger.record(wanted, input_sha256="0" * 64)
    home = _home(work / f"home_complete_{n}")
    path = work / f"complete_{n}.yaml"
    path.write_text(yaml.safe_dump({"ops": {"fetch_and_regrid": {"config": workflow}},
                                    "execution": {"config": _cluster("local", work)}}))
    run = _execute([DAGSTER, "job", "execute", "-m", "hpc_workflows", "-j", "fetch_and_regrid", "-c", str(path)],
                   _env(home))
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["already_complete"] == n, summary["already_complete"]
    return {"design": "re-run, all complete (local)", "files": n, "wall": run["wall"], "overhead": run["wall"] / n,
            "cpu_overhead": run["cpu"] / n, "coord_mib": run["coord_mib"], "worker_mib": None,
            "plan_s": summary["planning_seconds"], "steps": 2, "history_kb": _du(home) / n / 1024,
            "rerun": None, "rerun_cluster": run["cluster_started"]}


def _print(rows: list[dict], per_file: dict[int, tuple[float, float]]) -> None:
    print(f"\narchive benchmark, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {GOALS}")
    print("per-file work in a plain loop, wall / CPU s per file: "
          + ", ".join(f"{n} files: {w:.4f} / {c:.4f}" for n, (w, c) in sorted(per_file.items())))
    head = (f"{'design':30} {'files':>6} {'steps':>6} {'wall s':>8} {'ovh s/file':>10} {'cpu ovh':>8} {'coord MiB':>9} "
            f"{'worker MiB':>10} {'plan s':>6} {'hist KB/f':>9} {'re-run':>7} {'cluster':>7}")
    print(head)
    for r in rows:
        plan = f"{r['plan_s']:6.2f}" if r["plan_s"] is not None else f"{'-':>6}"
        rerun = f"{100 * r['rerun']:6.1f}%" if r["rerun"] is not None else f"{'-':>7}"
        cluster = ("-" if r["rerun_cluster"] is None else ("yes" if r["rerun_cluster"] else "no"))
        worker = f"{r['worker_mib']:10.0f}" if r["worker_mib"] is not None else f"{'-':>10}"
        cpu_ovh = f"{r['cpu_overhead']:8.4f}" if r.get("cpu_overhead") is not None else f"{'-':>8}"
        print(f"{r['design']:30} {r['files']:6d} {r['steps']:6d} {r['wall']:8.1f} {r['overhead']:10.4f} {cpu_ovh} "
              f"{r['coord_mib']:9.0f} {worker} {plan} {r['history_kb']:9.2f} {rerun} {cluster:>7}",
              flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--old-sizes", type=int, nargs="*", default=[100],
                        help="sizes for the old one-step-per-file design (none: skip)")
    parser.add_argument("--complete-only", type=int, nargs="*", default=[],
                        help="sizes for a re-run over placeholder outputs recorded complete (no work)")
    parser.add_argument("--no-slurm", action="store_true", help="local cluster only")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="archive_bench_"))
    kinds = ["local"]
    if not args.no_slurm and shutil.which("sinfo") and subprocess.run(
            ["sinfo", "-h"], capture_output=True, timeout=15).returncode == 0:
        kinds.append("slurm")
    rows: list[dict] = []
    per_file: dict[int, tuple[float, float]] = {}
    try:
        for n in sorted(set(args.sizes) | set(args.old_sizes)):
            per_file[n] = _loop_seconds_per_file(work, n)
            if n in args.sizes:
                for kind in kinds:
                    rows.append(_batched(work, n, kind, per_file[n]))
                    _print(rows[-1:], per_file)
            if n in args.old_sizes:
                for job in ("per_file_in_process", "per_file_dagster_dask"):
                    rows.append(_old(work, n, job, per_file[n]))
                    _print(rows[-1:], per_file)
        for n in args.complete_only:
            rows.append(_complete_only(work, n))
            _print(rows[-1:], per_file)
        _print(rows, per_file)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
