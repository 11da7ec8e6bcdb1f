"""``hpc-workflows plan CONFIG --sample N``: N of the files to do really run (fetch, regrid with
09Z windows across files, write) into a temporary folder; per-file figures and an estimate from
them; the real output folder and ledger untouched, nothing submitted (squeue and sacct)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpc_workflows.fetch import Source
from hpc_workflows.hpc.dry_run import format_plan, make_plan
from hpc_workflows.hpc.sample_run import SAMPLE_MAX, FileFigures, Sample, SampleError, choose_sample
from tests.temporal.synthetic import TARGET, day_times, write_day

from .conftest import batch_cluster

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FIRST = dt.date(2020, 2, 1)


def _workflow(tmp: Path, days: int, execution: dict[str, Any] | None = None) -> Path:
    """Daily 5-minute rain files (12 on disk) summed into 09Z rain days: windows cross files,
    so each file is written with the next one beside it, as in the pipeline."""
    archive = tmp / "archive"
    if not archive.is_dir():
        archive.mkdir()
        for i in range(12):
            day = FIRST + dt.timedelta(days=i)
            write_day(archive / f"rain_{day:%Y%m%d}.nc", day_times(day))
    workflow = {
        "window": {"start": f"{FIRST}", "end": f"{FIRST + dt.timedelta(days=days - 1)}",
                   "step": "24h"},
        "source": {"template": str(archive / "rain_{dt:%Y%m%d}.nc"), "retries": 0},
        "regrid": {"method": "conservative", "target": TARGET,
                   "time_aggregation": {"freq": "24h", "offset": "9h", "how": "sum",
                                        "scale": 1 / 12, "units": "mm"}},
        "output": {"directory": str(tmp / "out"), "workdir": str(tmp / "scratch"), "name": "rain"},
        "batching": {"files_per_step": 3, "files_in_flight": 2},
    }
    execution = execution or {"cluster": {"local": {"threads_per_worker": 1}}, "scale": 2}
    path = tmp / f"run_{days}.yaml"
    path.write_text(yaml.safe_dump({"ops": {"fetch_and_regrid": {"config": workflow}},
                                    "execution": {"config": execution}}))
    return path


def _tree(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: size, mtime and sha256 (what 'untouched' means)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns,
                                         hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_choose_sample_spreads_over_the_files_and_refuses_bad_sizes() -> None:
    todo = [Source(key=f"k{i}", url=f"/a/{i}.nc") for i in range(12)]
    assert [s.key for s in choose_sample(todo, 3)] == ["k0", "k6", "k11"]
    assert [s.key for s in choose_sample(todo, 1)] == ["k6"]
    assert len(choose_sample(todo, 12)) == 12
    for n, said in ((0, "between 1 and"), (SAMPLE_MAX + 1, "between 1 and"),
                    (13, "only 12 are still to do: ask for at most 12")):
        with pytest.raises(SampleError, match=said):
            choose_sample(todo, n)
    with pytest.raises(SampleError, match="nothing to sample"):
        choose_sample([], 1)


@pytest.mark.slow
def test_sample_figures_and_an_estimate_that_follows_the_files_to_do(tmp_path: Path) -> None:
    from .test_dry_run import _history

    (tmp_path / "samples").mkdir()
    _history(tmp_path / "out", seconds=2.0, files=4, max_rss=None)  # a last run's summary
    before = _tree(tmp_path / "out")
    for days in (6, 12):
        told: list[str] = []
        plan = make_plan(_workflow(tmp_path, days), sample=2, sample_dir=tmp_path / "samples",
                         announce=told.append)
        sample, e = plan.sample, plan.sample_estimate
        assert sample is not None and e is not None and plan.todo == days
        assert [f.key for f in sample.files] == ["20200201", f"{FIRST + dt.timedelta(days=days - 1):%Y%m%d}"]
        assert "fetches for real" in told[0] and "next file too" in told[0]
        for f in sample.files:
            assert f.status == "written", f.error
            # The bytes really fetched are the archive file's; the peak is a real process's.
            assert f.bytes_fetched == (tmp_path / "archive" / f"rain_{f.key}.nc").stat().st_size
            assert f.wall_seconds > 0 and f.cpu_seconds > 0 and f.peak_rss > 50 * 2**20
        # Two local workers: the first file's extra once, then the steady pace over the files.
        assert e.workers == 2
        assert e.wall_seconds == pytest.approx(
            sample.first_file_extra + sample.seconds_per_file * days / 2)
        assert sample.seconds_per_file == pytest.approx(sample.files[1].wall_seconds)
        text = format_plan(plan)
        assert "estimate from the sample" in text and f"x {days} file(s) / 2 worker(s)" in text
        assert "estimate from history: ~" in text  # both, labelled
    # Nothing of either sample is left, and nothing was written where the run writes.
    assert list((tmp_path / "samples").iterdir()) == []
    assert _tree(tmp_path / "out") == before and not (tmp_path / "scratch").exists()

    with pytest.raises(SampleError, match="only 6 are still to do"):
        make_plan(_workflow(tmp_path, 6), sample=7, sample_dir=tmp_path / "samples")


@pytest.mark.slow
def test_bad_sample_size_is_one_clear_error_before_anything(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "plan",
                           str(tmp_path / "not-read.yaml"), "--sample", str(SAMPLE_MAX + 1)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"--sample: {SAMPLE_MAX + 1} is not between 1 and {SAMPLE_MAX}" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    done = subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "plan",
                           str(tmp_path / "not-read.yaml"), "--sample", "2", "--sample-dir",
                           str(tmp_path / "missing")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "--sample-dir:" in done.stderr and "is not a folder" in done.stderr


def test_sample_warnings_name_the_field(tmp_path: Path) -> None:
    from hpc_workflows.hpc.dry_run import _resolved, _sample_estimate_and_warnings

    execution = {"cluster": {"slurm": batch_cluster(tmp_path, walltime="00:05:00", memory="1GiB",
                                                    cores=2, processes=2)}, "scale": 2}
    path = _workflow(tmp_path, 6, execution)
    plan = make_plan(path)
    _, executor, _ = _resolved(path, "fetch_and_regrid")
    # Figures as a sample of two slow, large files would give (first 700 s, then 500 s each).
    plan.sample = Sample([FileFigures("a", "written", 700.0, 650.0, 600 * 2**20, 10),
                          FileFigures("b", "written", 500.0, 480.0, 400 * 2**20, 10)])
    text = "\n".join(_sample_estimate_and_warnings(plan, executor, plan.files_per_step))
    # 3 files per step x 500 s > the worker's lifetime; 600 MiB x 2 processes > 80% of 1 GiB.
    assert "execution.config.cluster.slurm.walltime" in text and "~1500 s by the sample" in text
    assert "execution.config.cluster.slurm.memory" in text and "x 2 worker processes" in text
    assert plan.sample_estimate.wall_seconds == pytest.approx(200.0 + 500.0 * 6 / 2)


@pytest.mark.slow
@pytest.mark.slurm
def test_cli_sample_leaves_outputs_and_ledger_and_submits_nothing(testbed: None,
                                                                   tmp_path: Path) -> None:
    from hpc_workflows.batching import process_file
    from hpc_workflows.config import validate_workflow_config
    from hpc_workflows.pipeline.settings import batch_job, planned_sources

    execution = {"cluster": {"slurm": batch_cluster(tmp_path, memory="100MiB")}, "scale": 2}
    path = _workflow(tmp_path, 12, execution)
    # One file written for real first: the output folder has an output and a ledger.
    cfg = validate_workflow_config(yaml.safe_load(path.read_text())["ops"]["fetch_and_regrid"]["config"])
    assert process_file(planned_sources(cfg)[0], batch_job(cfg)).status == "written"
    out = tmp_path / "out"
    before = _tree(out)
    assert any("ledger" in name for name in before), before

    def jobs_from_here() -> set[str]:
        # Only jobs submitted from this test's folder: other tests may share the testbed.
        queued = subprocess.run(["squeue", "-h", "-O", "JobID,WorkDir:400"], capture_output=True,
                                text=True, check=True, timeout=30).stdout.splitlines()
        done = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobIDRaw,WorkDir", "-S",
                               "now-10minutes"], capture_output=True, text=True,
                              timeout=30).stdout.splitlines()
        rows = [line.split(None, 1) for line in queued] + [line.split("|", 1) for line in done]
        return {r[0] for r in rows if len(r) == 2 and r[1].strip().startswith(str(tmp_path))}

    assert jobs_from_here() == set()
    done = subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "plan", str(path),
                           "--sample", "3", "--sample-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "11 to do" in done.stdout
    # Spread over the 11 files to do: the first, the middle and the last.
    for key in ("20200202", "20200207", "20200212"):
        assert any(line.strip().startswith(f"{key}: written,") and "peak RSS" in line
                   for line in lines), (key, done.stdout)
    assert "estimate from the sample" in done.stdout and "x 11 file(s) / 2 worker(s)" in done.stdout
    assert "warning: execution.config.cluster.slurm.memory: 100MiB" in done.stdout
    assert _tree(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("hpcw-plan-sample-")]
    assert jobs_from_here() == set()
