"""``hpc-workflows plan CONFIG --sample N``: run N of the files still to do, measure them, and
leave the project as it was.

Plain Python, no Dagster. The sampled files run one after another in a child process (as on a
worker) through the pipeline's own batch code (:func:`hpc_workflows.batching.run_batch` with
the run's sources, so time windows that cross files fetch the next file as a batch does, and
every format, archive and tape recall goes the same way), but with a copy of the run's
:class:`BatchJob` whose outputs, ledger, scratch and regridding-weights cache are in a
temporary folder: the real output folder and ledger are never written, and nothing is
submitted.

Per file the child measures wall seconds and CPU seconds of the file's work (not the imports),
the peak resident set size of the process during it (``VmHWM``, reset before each file: the
Python interpreter and libraries included, as in a worker process) and the bytes fetched.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_workflows.batching import BatchJob
from hpc_workflows.fetch import Source

__all__ = ["SAMPLE_MAX", "FileFigures", "Sample", "SampleError", "choose_sample", "run_sample",
           "sample_job"]

#: At most this many files per sample: a sample fetches real data (a tape recall on an
#: archive) and runs one file at a time on this node, so it is a probe, not a small run.
SAMPLE_MAX = 20


class SampleError(ValueError):
    """``--sample N`` cannot be honoured (N out of range); the message says the fix."""


@dataclass
class FileFigures:
    """What one sampled file cost."""

    key: str
    status: str  # "written" or "failed"
    wall_seconds: float
    cpu_seconds: float
    peak_rss: int | None  # bytes; None when the child died before it could say
    bytes_fetched: int
    error: str | None = None


@dataclass
class Sample:
    """The figures of a sample run, in the order the files ran."""

    files: list[FileFigures]

    @property
    def written(self) -> list[FileFigures]:
        """The sampled files that were processed to the end."""
        return [f for f in self.files if f.status == "written"]

    @property
    def _steady(self) -> list[FileFigures]:
        # A worker's first file also pays the process's first-call costs (lazy imports inside
        # libraries, the weights when not cached): the files after it show the steady pace.
        done = self.written
        return done[1:] if len(done) > 1 else done

    @property
    def seconds_per_file(self) -> float | None:
        """Mean wall seconds of a file written after the first (of the only one if just one)."""
        steady = self._steady
        return sum(f.wall_seconds for f in steady) / len(steady) if steady else None

    @property
    def first_file_extra(self) -> float:
        """Seconds the first file written took beyond the steady pace (once per worker)."""
        done, pace = self.written, self.seconds_per_file
        return max(0.0, done[0].wall_seconds - pace) if len(done) > 1 and pace is not None else 0.0

    @property
    def cpu_seconds_per_file(self) -> float | None:
        """Mean CPU seconds of a file written after the first (of the only one if just one)."""
        steady = self._steady
        return sum(f.cpu_seconds for f in steady) / len(steady) if steady else None

    @property
    def bytes_per_file(self) -> float | None:
        """Mean bytes fetched per file written (None: none was)."""
        done = self.written
        return sum(f.bytes_fetched for f in done) / len(done) if done else None

    @property
    def peak_rss(self) -> int | None:
        """The largest peak RSS of any sampled process, failed ones included (a file that
        failed for memory shows what the run needs most)."""
        peaks = [f.peak_rss for f in self.files if f.peak_rss is not None]
        return max(peaks) if peaks else None


def choose_sample(todo: Sequence[Source], n: int) -> list[Source]:
    """``n`` files of ``todo`` spread evenly over it, first and last included.

    Evenly spaced, not the first ``n``: neighbouring files are alike (same season, same
    archive tape, same format version), while files far apart in a window differ most (a
    summer's convective rain compresses worse than winter's; a long archive changes format
    and resolution over the years), so a spread sample tells more about the whole.

    Raises
    ------
    SampleError
        ``n`` below 1, above :data:`SAMPLE_MAX`, or above the number of files to do.
    """
    check_sample_size(n)
    if n > len(todo):
        raise SampleError(f"--sample: {n} file(s) asked, but only {len(todo)} are still to do: "
                          f"ask for at most {len(todo)}" if todo else
                          "--sample: every file is already complete, there is nothing to sample: "
                          "drop --sample")
    if n == 1:
        return [todo[len(todo) // 2]]
    picked = sorted({round(i * (len(todo) - 1) / (n - 1)) for i in range(n)})
    return [todo[i] for i in picked]


def check_sample_size(n: int) -> None:
    """:class:`SampleError` unless ``1 <= n <= SAMPLE_MAX`` (checked before any work)."""
    if not 1 <= n <= SAMPLE_MAX:
        raise SampleError(f"--sample: {n} is not between 1 and {SAMPLE_MAX}: a sample runs its "
                          f"files one by one on this node; ask for 1 to {SAMPLE_MAX} files")


def sample_job(job: BatchJob, folder: Path) -> BatchJob:
    """``job`` with outputs, ledger, scratch and weights cache under ``folder``.

    Weights the run's cache already holds are linked in, so the sample regrids as a run that
    finds them would (a file's weights are rebuilt only when missing there too). Linking is
    safe: weights are read, and a rebuilt file is written beside its link and renamed over the
    link, never written through it.
    """
    weights = folder / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    cached = Path(job.preprocess.weights_dir) if job.preprocess.weights_dir else None
    if cached is not None and cached.is_dir():
        for path in cached.glob("weights_*.nc"):
            (weights / path.name).symlink_to(path.resolve())
    preprocess = dataclasses.replace(job.preprocess, weights_dir=str(weights))
    return dataclasses.replace(job, output_dir=folder / "out", workdir=folder / "scratch",
                               preprocess=preprocess, keep_scratch=False)


def _status_bytes(name: str) -> int | None:
    """A ``VmHWM``/``VmRSS`` line of /proc/self/status in bytes (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _warm_imports() -> None:
    """Import what the per-file code imports lazily, before the clock starts: a worker pays
    that once, before its first file, not for every file."""
    import importlib

    for name in _PER_FILE_MODULES:
        importlib.import_module(name)


#: The modules the per-file path imports inside functions (batching.files, preprocess).
_PER_FILE_MODULES = ("xarray", "netCDF4", "hpc_workflows.preprocess", "hpc_workflows.regrid",
                     "hpc_workflows.regrid.api", "hpc_workflows.temporal", "hpc_workflows.write",
                     "hpc_workflows.formats", "hpc_workflows.fetch.recall")


def _reset_peak() -> None:
    """Start a new ``VmHWM`` from the current RSS (Linux >= 4.0), so each file has its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak is the process's so far: never below the file's own


def _child(spec_file: Path, figures_file: Path) -> None:
    """Run the sampled files one after another (the child process's whole work), appending one
    line of figures per file as it ends (a process killed later keeps the earlier ones)."""
    from hpc_workflows.batching import run_batch

    sources, job, run_sources = pickle.loads(spec_file.read_bytes())
    _warm_imports()
    for source in sources:
        _reset_peak()
        kids_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        cpu0, started = _cpu_seconds(), time.perf_counter()
        result = run_batch([source], job, run_sources=run_sources)[0]
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu0
        # VmHWM, not ru_maxrss: the kernel carries a process's pre-exec peak into ru_maxrss, so
        # a child started from the (large) plan process would report the plan's size. A command
        # the fetch ran (tape, scp) counts by its own peak: ru_maxrss of the waited-for
        # children, when it rose during this file (it is a maximum over the process's life).
        peaks = [_status_bytes("VmHWM")]
        if (now := resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) > kids_peak:
            peaks.append(now * 1024)
        with figures_file.open("a") as out:
            out.write(json.dumps({
                "key": source.key, "status": result.status, "error": result.error, "wall": wall,
                "cpu": cpu, "peak_rss": max((p for p in peaks if p is not None), default=None),
                "bytes": int(result.fetch.get("bytes") or 0)}) + "\n")


def _run_all(sources: Sequence[Source], job: BatchJob, run_sources: Sequence[Source] | None,
             folder: Path) -> list[FileFigures]:
    spec, figures = folder / "sample.spec", folder / "figures.jsonl"
    spec.write_bytes(pickle.dumps((list(sources), job, list(run_sources) if run_sources else None)))
    done = subprocess.run([sys.executable, "-m", __name__, str(spec), str(figures)],
                          capture_output=True, text=True, check=False)
    got = {}
    if figures.is_file():
        for line in figures.read_text().splitlines():
            row = json.loads(line)
            got[row["key"]] = FileFigures(row["key"], row["status"], row["wall"], row["cpu"],
                                          row["peak_rss"], row["bytes"], row["error"])
    # Killed (out of memory: exit code -9) or crashed: the file it was on, and any after it,
    # failed for the reason it said last.
    said = (done.stderr.strip().splitlines() or [""])[-1]
    return [got.get(s.key) or FileFigures(
        s.key, "failed", 0.0, 0.0, None, 0,
        f"sample process ended with exit code {done.returncode} before this file was done: {said}")
        for s in sources]


def run_sample(sources: Sequence[Source], job: BatchJob, run_sources: Sequence[Source] | None,
               *, parent: str | Path | None = None) -> Sample:
    """Process ``sources`` one after another in a child process, into a temporary folder;
    return their figures. The folder is removed afterwards.

    Parameters
    ----------
    sources
        The sampled files (:func:`choose_sample`).
    job
        The run's BatchJob; only a copy pointing into the temporary folder is used.
    run_sources
        Every source of the run when windows cross files (``job.neighbour_step``), as the
        pipeline passes them: each file's next file is fetched too. None otherwise.
    parent
        Where the temporary folder goes (default: ``$TMPDIR``); it must hold a file's fetch and
        scratch.

    Returns
    -------
    Sample
    """
    with tempfile.TemporaryDirectory(prefix="hpcw-plan-sample-", dir=parent) as tmp:
        folder = Path(tmp)
        # One process, files one after another, as a worker runs a batch step: the per-file
        # code's first-call costs are paid once, and each file's figures are its own.
        return Sample(_run_all(sources, sample_job(job, folder), run_sources, folder))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
