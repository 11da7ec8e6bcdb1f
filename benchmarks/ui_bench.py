"""The UI with an archive-sized run (issue 13, "Events in proportion").

    python benchmarks/ui_bench.py                        # 100 and 1,000 files
    python benchmarks/ui_bench.py --sizes 100 1000 10958 --keep /tmp/ui_bench   # reuse later

Per size: one ``dagster job execute -m hpc_workflows -j fetch_and_regrid`` of N tiny files on
the local cluster (files, configs and runner from :mod:`benchmarks.archive_bench`), into its
own SQLite DAGSTER_HOME; a kept folder's successful run is reused. Then

- run history: the run's rows and bytes in the SQLite event log (``history/runs/<id>.db``,
  the ``event_logs`` table) and the growth of DAGSTER_HOME, per file;
- the run page: ``hpc-workflows ui`` (token-protected, TCP loopback) serves that instance,
  Debian's headless Chromium opens ``/runs/<id>`` and the time is taken until the step list
  (``Succeeded (S)`` with S the run's step count: every step's status is in) and the run's
  end in the log (``RUN_SUCCESS``: the log streamed to its end) are on screen. The code location is loaded
  and the first-visit dialog dismissed by a warm-up visit first; each load is a fresh page
  (repeated ``--loads`` times: median and max). ``header s`` is the time until the page's
  header shows the run's id: the app's own load, the same for any run, against which the
  full page's time is read.

Goals: run page <= 5 s, history <= 2 KB per file. Timings on a shared 2-core machine: read the
trend. Not a test: nothing here is asserted in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.archive_bench import (  # noqa: E402 - after the path it needs
    DAGSTER, _cluster, _du, _env, _execute, _home, _workflow,
)
from tests.job_scripts.browser import CHROMIUM, FLAGS  # noqa: E402 - Debian's chromium, offline flags

GOALS = "goals: run page <= 5 s, history <= 2 KB/file"


def _successful_run(home: Path) -> str | None:
    """The id of the newest successful run in ``home``, if any."""
    if not (home / "history" / "runs.db").exists():
        return None
    with sqlite3.connect(home / "history" / "runs.db") as db:
        row = db.execute("SELECT run_id FROM runs WHERE status = 'SUCCESS' ORDER BY create_timestamp DESC"
                         " LIMIT 1").fetchone()
    return row[0] if row else None


def make_run(work: Path, n: int) -> tuple[Path, str, float | None]:
    """A successful fetch_and_regrid run of ``n`` files in its own instance (reused if there);
    returns the instance folder, the run id and the run's wall time (None when reused)."""
    import yaml

    home = work / f"home_{n}"
    run_id = _successful_run(home)
    if run_id:
        return home, run_id, None
    _home(home)
    out = work / f"out_{n}"
    path = work / f"run_{n}.yaml"
    path.write_text(yaml.safe_dump({"ops": {"fetch_and_regrid": {"config": _workflow(work, n, out)}},
                                    "execution": {"config": _cluster("local", work)}}))
    result = _execute([DAGSTER, "job", "execute", "-m", "hpc_workflows", "-j", "fetch_and_regrid", "-c", str(path)],
                      _env(home))
    run_id = _successful_run(home)
    if run_id is None:
        raise RuntimeError(f"no successful run recorded in {home}")
    return home, run_id, result["wall"]


def event_log_size(home: Path, run_id: str) -> tuple[int, int, int]:
    """Rows and bytes of the run's events (the ``event`` JSON column) in its SQLite event log,
    and the size of that database file."""
    path = home / "history" / "runs" / f"{run_id}.db"
    with sqlite3.connect(path) as db:
        rows, size = db.execute("SELECT count(*), coalesce(sum(length(event)), 0) FROM event_logs").fetchone()
    return rows, size, path.stat().st_size


class Ui:
    """``hpc-workflows ui --host 127.0.0.1`` over one instance, until :meth:`stop`."""

    def __init__(self, home: Path, work: Path) -> None:
        state = work / f"ui_state_{home.name}"
        self.log = work / f"ui_{home.name}.log"
        env = _env(home, {"HPCW_UI_STATE_DIR": str(state)})
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hpc_workflows.cli", "ui", "--host", "127.0.0.1"],
                                         cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not (match := re.search(r"\(\S+:(\d+), token required\)", self.log.read_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"hpc-workflows ui did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.2)  # polling the banner with a deadline, not synchronising on a sleep
        self.base = f"http://127.0.0.1:{match[1]}"
        self.token = next(state.glob("*.url")).read_text().splitlines()[0].split("token=", 1)[1]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def time_run_page(ui: Ui, run_id: str, steps: int, loads: int,
                  timeout_s: float = 180) -> list[tuple[float, float]]:
    """Seconds from navigation to ``/runs/<id>`` until its header shows, and until the step
    list counts all ``steps`` as succeeded and the log shows RUN_SUCCESS, for ``loads`` fresh
    pages after a warm-up visit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            warm = context.new_page()
            skip = warm.get_by_role("button", name="Skip")
            warm.add_locator_handler(skip, lambda loc: loc.click())
            # The token once (the cookie carries it after); the runs list shows the run.
            warm.goto(f"{ui.base}/runs?token={ui.token}", timeout=timeout_s * 1000)
            warm.get_by_text(run_id[:8]).first.wait_for(state="visible", timeout=timeout_s * 1000)
            warm.close()
            times = []
            for _ in range(loads):
                page = context.new_page()
                page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda loc: loc.click())
                started = time.perf_counter()
                page.goto(f"{ui.base}/runs/{run_id}", timeout=timeout_s * 1000)
                # The header (the run's short id) needs only the app and the run's record: what
                # any run's page costs, whatever its size.
                page.get_by_text(run_id[:8], exact=True).first.wait_for(state="visible", timeout=timeout_s * 1000)
                header = time.perf_counter() - started
                for text in (f"Succeeded ({steps})", "RUN_SUCCESS"):
                    page.get_by_text(text, exact=True).first.wait_for(state="visible", timeout=timeout_s * 1000)
                times.append((header, time.perf_counter() - started))
                page.close()
            return times
        finally:
            browser.close()


def measure(work: Path, n: int, loads: int) -> dict:
    """One size: the run (made or reused), its event log, and the run page in the browser."""
    home, run_id, wall = make_run(work, n)
    rows, event_bytes, db_bytes = event_log_size(home, run_id)
    summary = json.loads((work / f"out_{n}" / "run_summary.json").read_text())
    steps = summary["batch_steps"] + 2  # plan_sources, the batches, summarise
    ui = Ui(home, work)
    try:
        times = time_run_page(ui, run_id, steps, loads)
    finally:
        ui.stop()
    return {"files": n, "steps": steps, "run_wall": wall, "rows": rows, "event_kb": event_bytes / 1024,
            "event_b_per_file": event_bytes / n, "db_b_per_file": db_bytes / n, "home_b_per_file": _du(home) / n,
            "header_median": statistics.median(t[0] for t in times),
            "page_median": statistics.median(t[1] for t in times), "page_max": max(t[1] for t in times)}


def _print(rows: list[dict]) -> None:
    print(f"\nUI benchmark, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {GOALS}")
    print(f"{'files':>6} {'steps':>5} {'run s':>7} {'events':>7} {'event KB':>9} {'ev B/file':>9} {'db B/file':>9} "
          f"{'home B/file':>11} {'header s':>8} {'page s med':>10} {'page s max':>10}")
    for r in rows:
        wall = f"{r['run_wall']:7.1f}" if r["run_wall"] is not None else f"{'reused':>7}"
        print(f"{r['files']:6d} {r['steps']:5d} {wall} {r['rows']:7d} {r['event_kb']:9.0f} {r['event_b_per_file']:9.0f} "
              f"{r['db_b_per_file']:9.0f} {r['home_b_per_file']:11.0f} {r['header_median']:8.2f} {r['page_median']:10.2f} "
              f"{r['page_max']:10.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--loads", type=int, default=3, help="run-page loads per size (median and max)")
    parser.add_argument("--keep", type=Path, help="work folder to keep (and reuse runs from) instead of a temporary one")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="ui_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    try:
        for n in args.sizes:
            rows.append(measure(work, n, args.loads))
            _print(rows[-1:])
        _print(rows)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
