"""The plain batching core: completion ledger, per-file failures and retries, bounded scratch,
pipelining. Real files, the real filesystem transport and the real regridder throughout."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from hpc_workflows.batching import (
    LEDGER_NAME,
    Ledger,
    default_files_per_step,
    plan_work,
    process_file,
    run_batch,
)
from tests.batching.conftest import make_job, make_sources, write_day


def _wanted(job, sources):
    return [i for s in sources for i in job.outputs_for(s).values()]


def test_ledger_rule_deleted_changed_or_resettled_outputs_are_not_complete(tmp_path, sources):
    job = make_job(tmp_path)
    results = run_batch(sources, job)
    assert [r.status for r in results] == ["written"] * len(sources)
    wanted = _wanted(job, sources)
    ledger = Ledger(job.output_dir)
    assert ledger.completed(wanted) == {w.path for w in wanted}

    deleted, appended, touched, rewritten = (w.path for w in wanted[:4])
    deleted.unlink()
    with open(appended, "ab") as fh:  # corrupted: bytes added
        fh.write(b"\0" * 16)
    os.utime(touched, ns=(time.time_ns(), time.time_ns() - 10**9))  # changed by someone
    data = rewritten.read_bytes()
    rewritten.write_bytes(data[: len(data) // 2])  # truncated in place
    again = Ledger(job.output_dir).completed(wanted)
    assert again == {w.path for w in wanted[4:]}

    # Other settings (another target grid): nothing is complete for that run.
    other = make_job(tmp_path, target="global_5deg")
    assert Ledger(other.output_dir).completed(_wanted(other, sources)) == set()

    # A torn last line (a writer killed mid-append) is ignored, the rest still counts.
    with open(job.output_dir / LEDGER_NAME, "a") as fh:
        fh.write('{"name": "tas_2020')
    assert Ledger(job.output_dir).completed(wanted) == {w.path for w in wanted[4:]}

    # The next batch redoes exactly the four and records them again.
    redo = run_batch(sources, job)
    assert [r.status for r in redo] == ["written"] * 4 + ["complete"] * 2
    assert Ledger(job.output_dir).completed(wanted) == {w.path for w in wanted}
    assert oct((job.output_dir / LEDGER_NAME).stat().st_mode & 0o777) == "0o600"


def test_an_output_without_ledger_entry_is_checked_once_by_its_stamp_then_recorded(tmp_path, sources):
    job = make_job(tmp_path, keep_scratch=True)
    first = run_batch(sources[:2], job)
    assert all(r.status == "written" for r in first)
    (job.output_dir / LEDGER_NAME).unlink()  # outputs written by an older version
    mtimes = [w.path.stat().st_mtime_ns for w in _wanted(job, sources[:2])]
    second = run_batch(sources[:2], job)
    # Not trusted blindly (status "written": its stamp was checked), but not rewritten either.
    assert [r.status for r in second] == ["written", "written"]
    assert all(o["skipped"] for r in second for o in r.outputs)
    assert [w.path.stat().st_mtime_ns for w in _wanted(job, sources[:2])] == mtimes
    assert [r.status for r in run_batch(sources[:2], job)] == ["complete", "complete"]


def test_failed_file_loses_no_other_work_and_retry_redoes_only_it(tmp_path):
    sources = make_sources(tmp_path / "archive", 5, missing=(2,))
    job = make_job(tmp_path)
    results = run_batch(sources, job)
    by_key = {r.key: r for r in results}
    failed = sources[2].key
    assert by_key[failed].status == "failed"
    assert "FetchError" in by_key[failed].error and sources[2].url in by_key[failed].error
    assert not by_key[failed].retryable  # a missing file: a step retry would repeat it
    others = [s for s in sources if s.key != failed]
    assert all(by_key[s.key].status == "written" for s in others)
    wanted_others = _wanted(job, others)
    assert Ledger(job.output_dir).completed(wanted_others) == {w.path for w in wanted_others}
    mtimes = {w.path: w.path.stat().st_mtime_ns for w in wanted_others}

    write_day(Path(sources[2].url), 2)  # the file arrives
    retry = run_batch(sources, job)
    assert {r.key: r.status for r in retry} == {s.key: ("written" if s.key == failed else "complete")
                                                for s in sources}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # untouched
    assert Ledger(job.output_dir).completed(_wanted(job, sources)) == {w.path for w in _wanted(job, sources)}


class _FolderWatch:
    """Polls the real filesystem from a thread: the most scratch folders present at once, when
    the first output appeared and when each source's scratch folder first appeared."""

    def __init__(self, scratch: Path, out: Path):
        self.scratch, self.out = scratch, out
        self.most = 0
        self.first_output: float | None = None
        self.scratch_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                present = [p.name for p in self.scratch.iterdir()]
            except FileNotFoundError:
                present = []
            self.most = max(self.most, len(present))
            for name in present:
                self.scratch_seen.setdefault(name, now)
            if self.first_output is None and self.out.is_dir() and any(self.out.glob("tas_*.nc")):
                self.first_output = now
            time.sleep(0.001)

    def __enter__(self) -> _FolderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_scratch_holds_at_most_files_in_flight_and_outputs_come_before_the_last_fetch(tmp_path):
    sources = make_sources(tmp_path / "archive", 10)
    job = make_job(tmp_path, files_in_flight=2)
    with _FolderWatch(job.workdir, job.output_dir) as watch:
        results = run_batch(sources, job)
    assert all(r.status == "written" for r in results)
    assert 1 <= watch.most <= 2, f"{watch.most} files on scratch at once, files_in_flight=2"
    assert watch.first_output is not None
    last = sources[-1].key
    assert watch.first_output < watch.scratch_seen[last], "the first output waited for every fetch"
    assert not any(job.workdir.iterdir()), "verified files' scratch is removed"


def test_keep_scratch_keeps_downloads(tmp_path, sources):
    job = make_job(tmp_path, keep_scratch=True)
    run_batch(sources[:2], job)
    assert sorted(p.name for p in job.workdir.iterdir()) == [s.key for s in sources[:2]]


def test_plan_splits_complete_from_todo_in_batches(tmp_path):
    sources = make_sources(tmp_path / "archive", 7)
    job = make_job(tmp_path)
    for s in sources[:3]:
        assert process_file(s, job).status == "written"
    plan = plan_work(sources, job, files_per_step=3)
    assert [s.key for s in plan.complete] == [s.key for s in sources[:3]]
    assert [[s.key for s in b] for b in plan.batches] == [[s.key for s in sources[3:6]], [sources[6].key]]
    assert plan_work(sources[:3], job).batches == []


@pytest.mark.parametrize("n, per_step", [(1, 1), (2, 1), (100, 7), (1000, 63), (10958, 500)])
def test_default_files_per_step(n, per_step):
    assert default_files_per_step(n) == per_step


def test_progress_reports_each_file_with_totals(tmp_path, sources):
    job = make_job(tmp_path)
    seen = []
    run_batch(sources[:3], job, progress=seen.append)
    assert [p.done for p in seen] == [1, 2, 3] and all(p.total == 3 for p in seen)
    assert seen[-1].bytes_fetched == sum(Path(s.url).stat().st_size for s in sources[:3])
    assert "3/3 files" in seen[-1].line()
    json.dumps([r.as_dict() for r in run_batch(sources[:3], job)], allow_nan=False)
