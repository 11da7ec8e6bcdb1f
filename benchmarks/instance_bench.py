"""Instance benchmark: how many concurrent event writers SQLite and PostgreSQL take.

Every Dask worker of a run opens the Dagster instance and writes its step's events, so an
instance must take as many concurrent writers as a run has workers (and concurrent runs more).
This starts N writer processes at once; each stores E engine events into one run's event log
as fast as it can. Printed per (storage, N): events/s, and how many writes failed (e.g.
SQLite's "database is locked"), with the first error::

    .venv/bin/python benchmarks/instance_bench.py                     # N = 2, 8, 32; E = 200
    .venv/bin/python benchmarks/instance_bench.py --writers 4 16 --events 100

The SQLite instance is on the local disk here: on NFS/GPFS/Lustre, where a real run's
DAGSTER_HOME lives, SQLite's locking is weaker still, so read its row as a best case.
PostgreSQL is the user-space server of ``hpc-workflows postgres`` (hpc_workflows/pgserver.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _writer(home: str, run_id: str, events: int, ready, start, out) -> None:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    errors, first = 0, ""
    with DagsterInstance.from_ref(InstanceRef.from_dir(home)) as instance:
        run = instance.get_run_by_id(run_id)
        ready.put(os.getpid())
        start.wait()
        for i in range(events):
            try:
                instance.report_engine_event(f"bench event {i} from pid {os.getpid()}", run)
            except Exception as exc:  # noqa: BLE001 - counting failures is the point
                errors += 1
                first = first or f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    out.put((errors, first))


def _measure(home: Path, writers: int, events: int) -> tuple[float, int, str]:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.storage.dagster_run import DagsterRun

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        run = instance.add_run(DagsterRun(job_name="instance_bench"))
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(home), run.run_id, events, ready, start, out))
             for _ in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:  # every writer has imported dagster and opened the instance
        ready.get(timeout=600)
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    errors = sum(e for e, _ in results)
    first = next((f for _, f in results if f), "")
    return (writers * events - errors) / wall, errors, first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hpc_workflows import pgserver
    from hpc_workflows.instance import ensure_dagster_home

    base = Path(tempfile.mkdtemp(prefix="hpcw-instance-bench-", dir="/tmp"))
    os.chmod(base, 0o711)  # as root, the server runs as 'postgres' and must reach its folder
    rows = []
    try:
        sqlite_home = ensure_dagster_home(base / "sqlite")
        pg_home = ensure_dagster_home(base / "pg")
        pgserver.write_instance_yaml(pg_home, pgserver.start(pg_home))
        for n in args.writers:
            for label, home in (("sqlite", sqlite_home), ("postgres", pg_home)):
                rate, errors, first = _measure(home, n, args.events)
                rows.append((label, n, rate, errors, first))
                print(json.dumps({"storage": label, "writers": n, "events_per_s": round(rate, 1),
                                  "failed_writes": errors, "first_error": first}), flush=True)
    finally:
        pgserver.stop(base / "pg")
        subprocess.run(["rm", "-rf", str(base)], check=False)
    print(f"\n{'storage':<10}{'writers':>8}{'events/s':>10}{'failed':>8}  first error")
    for label, n, rate, errors, first in rows:
        print(f"{label:<10}{n:>8}{rate:>10.0f}{errors:>8}  {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
