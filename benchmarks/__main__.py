"""Run the benchmarks: ``python -m benchmarks [fetch|regrid|executor ...]`` (default: all).

Each benchmark compares us with the named peer in the same run and prints a table. They are
deliberately not tests: timings on a shared 2-core machine are noisy, so targets are read off
these tables, never asserted in the test suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "fetch": "fetch_bench.py",        # our HTTP fetch vs curl, 8 x 64 MB on loopback
    "regrid": "regrid_bench.py",      # conservative 0.25 -> 1 deg vs cdo, xarray-regrid, I/O floor
    "executor": "executor_bench.py",  # 50-step fan-out: ours vs dagster-dask vs in_process
    "archive": "archive_bench.py",    # 100..10,958 tiny files: batches vs one step per file
    "instance": "instance_bench.py",  # concurrent event writers: SQLite vs PostgreSQL
    "ui": "ui_bench.py",              # a run's page in headless Chromium, run history per file
    "pools": "pools_bench.py",        # fetch_and_regrid with/without a fetch pool (SLURM testbed)
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}: choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    rc = 0
    for name in names:
        script = HERE / BENCHMARKS[name]
        if not script.exists():
            print(f"== {name}: {script.name} not present", file=sys.stderr)
            rc = 1
            continue
        print(f"== {name} ({script.name})", flush=True)
        rc |= subprocess.call([sys.executable, str(script)])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
