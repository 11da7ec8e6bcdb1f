"""What TLS costs on the local Dask cluster: ``python benchmarks/local_tls_bench.py [rounds]``.

The run's local cluster is opened as the executor opens it (``open_cluster``, 2 workers x 1
thread), with ``tls`` off and on, interleaved, and timed for: start (until both workers are
connected), 200 trivial tasks one after the other (the per-task round trip, as a step's
submit/result is), moving 32 MB from a worker to the client, and close; for the tasks and the
transfer also the CPU time of all the cluster's processes. Medians printed.
"""

from __future__ import annotations

import statistics
import sys
import time

import psutil
from hpc_workflows.hpc.clusters import open_cluster
from hpc_workflows.hpc.settings import validate_executor_settings


def _payload(n: int) -> bytes:
    return b"x" * n


def _cpu() -> float:
    """CPU seconds of this process (scheduler, client) and its worker processes so far: on a
    shared, loaded machine a steadier measure of what TLS costs than wall time."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _one(tls: bool) -> dict[str, float]:
    settings = validate_executor_settings({"cluster": {"local": {"tls": tls}}, "scale": 2})
    t0 = time.perf_counter()
    rc = open_cluster(settings, "tlsbench")
    rc.client.wait_for_workers(2, timeout=60)
    t1, c1 = time.perf_counter(), _cpu()
    for i in range(200):
        rc.client.submit(int, i, pure=False).result()
    t2, c2 = time.perf_counter(), _cpu()
    assert len(rc.client.submit(_payload, 32 * 2**20, pure=False).result()) == 32 * 2**20
    t3, c3 = time.perf_counter(), _cpu()
    rc.close()
    t4 = time.perf_counter()
    return {"start s": t1 - t0, "task round trip ms": (t2 - t1) / 200 * 1e3,
            "CPU per task ms": (c2 - c1) / 200 * 1e3, "32 MB to client s": t3 - t2,
            "32 MB CPU s": c3 - c2, "close s": t4 - t3}


def main(rounds: int = 3) -> None:
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(rounds):
        for tls in (False, True):
            results[tls].append(_one(tls))
    keys = list(results[False][0])
    print("| tls | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for tls, rows in results.items():
        cells = [f"{statistics.median(r[k] for r in rows):.3g}" for k in keys]
        print(f"| {'on' if tls else 'off'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
