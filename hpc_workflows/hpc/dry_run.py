"""``hpc-workflows plan CONFIG``: what a run of a config would do and cost, with nothing submitted.

Plain Python. The same rules a run uses, not copies of them: the config is checked and resolved
as ``dagster job execute -c`` resolves it (:mod:`hpc_workflows.pipeline.check_config`), the files
come from :func:`~hpc_workflows.pipeline.settings.planned_sources` and are split into complete and
to do by :func:`~hpc_workflows.batching.plan_work` (the ledger rule), and the worker batch script is
dask-jobqueue's own ``job_script()`` for the keyword arguments the run's cluster gets
(:func:`~hpc_workflows.hpc.clusters.batch_cluster_kwargs`). The estimate comes from the
``run_summary.json`` and ``run_accounting.json`` an earlier run of the same workflow left next to
its outputs, and with ``--sample N`` from N of the files to do, run here first
(:mod:`hpc_workflows.hpc.sample_run`: into a temporary folder, nothing submitted).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpc_workflows.fetch.errors import redact_url

if TYPE_CHECKING:
    from .sample_run import Sample

__all__ = ["Estimate", "History", "PlanError", "RunPlan", "format_plan", "make_plan", "read_history"]

#: Scheduler address in a printed job script: the real one is only known once the run starts.
SCHEDULER_PLACEHOLDER = "tls://<scheduler>:<port>"
#: Job name in a printed job script (a run names its jobs ``dagster-<first 8 of the run id>``).
JOB_NAME_PLACEHOLDER = "dagster-RUNID"
#: A job whose peak memory (by history) is above this fraction of its request gets a warning.
MEMORY_WARN_FRACTION = 0.8
#: Output paths listed in full.
OUTPUTS_SHOWN = 5


class PlanError(ValueError):
    """The config cannot be planned (invalid); the message lists every problem."""


@dataclass
class History:
    """What an earlier run of the same outputs measured."""

    summary_file: Path
    files_written: int
    seconds_per_file: float  # mean wall seconds one file took on its worker
    accounting_file: Path | None = None
    core_hours: float | None = None  # of the whole earlier run's worker jobs
    max_rss: int | None = None  # peak of one worker job, bytes
    failures: dict[str, int] = field(default_factory=dict)
    start_seconds: float = 0.0  # mean queue wait + worker start-up of a worker job

    @property
    def core_hours_per_file(self) -> float | None:
        """Core-hours the earlier run charged per file it wrote."""
        if self.core_hours is None or not self.files_written:
            return None
        return self.core_hours / self.files_written


@dataclass
class Estimate:
    """Wall time and core-hours of the files to do, from :class:`History`."""

    wall_seconds: float
    workers: int
    core_hours: float


@dataclass
class RunPlan:
    """What a run of one config would do. Nothing in it was submitted or written."""

    config: Path
    files: int
    complete: int
    todo: int
    batches: int
    files_per_step: int
    bytes_known: int
    files_size_unknown: int
    outputs: list[Path]
    cluster_kind: str
    job_scripts: dict[str, tuple[str, str]]  # pool ("" the main cluster) -> (kind, script)
    history: History | None
    estimate: Estimate | None  # from history
    warnings: list[str] = field(default_factory=list)
    sample: Sample | None = None
    sample_estimate: Estimate | None = None


def _resolved(path: Path, job_name: str) -> tuple[Any, Any, list[str]]:
    """(WorkflowConfig, ExecutorSettings, warnings) of a valid run config file, values resolved
    as Dagster resolves them (``{env: NAME}`` included); :class:`PlanError` when invalid."""
    from dagster import validate_run_config

    from hpc_workflows.config import validate_workflow_config
    from hpc_workflows.config_file import load_run_config_file
    from hpc_workflows.definitions import defs
    from hpc_workflows.hpc.settings import validate_executor_settings
    from hpc_workflows.pipeline.check_config import _executor_config, check_run_config_file

    report = check_run_config_file(path, job_name)
    if not report.ok:
        raise PlanError("\n".join([f"{path}: invalid run config:", *report.errors]))
    # Checked above, so this cannot fail now; Dagster's own resolution gives the values a run gets.
    resolved = validate_run_config(defs.get_job_def(job_name), load_run_config_file(path).data)
    workflow = resolved["ops"][f"{job_name}.plan_sources"]["config"]
    executor = _executor_config({"execution": {"config": next(iter(resolved["execution"].values()))}})
    return validate_workflow_config(workflow), validate_executor_settings(executor), report.warnings


def _size_of(client: Any, url: str) -> int | None:
    """A URL's size by HEAD, or (servers that refuse HEAD: 405, 501) by a one-byte range GET."""
    response = client.head(url)
    if response.status_code < 400 and response.headers.get("content-length") is not None:
        return int(response.headers["content-length"])
    if response.status_code not in (405, 501):
        return None
    with client.stream("GET", url, headers={"Range": "bytes=0-0"}) as got:  # body never read
        total = got.headers.get("content-range", "").rpartition("/")[2]
        if got.status_code == 206 and total.isdigit():
            return int(total)
        length = got.headers.get("content-length")
        return int(length) if got.status_code == 200 and length is not None else None


def _head_sizes(urls: list[str], limit: int, timeout: float) -> dict[str, int]:
    """Sizes of at most ``limit`` http(s) URLs (HEAD); failures and timeouts are just unknown."""
    import httpx

    sizes: dict[str, int] = {}
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for url in urls[:limit]:
            try:
                size = _size_of(client, url)
            except (httpx.HTTPError, ValueError):
                continue  # a dry run reports what it can; the run itself retries and says why
            if size is not None:
                sizes[url] = size
    return sizes


def read_history(output_dir: Path) -> History | None:
    """The figures of the last run that wrote into ``output_dir``, ``None`` if none ran there.

    Parameters
    ----------
    output_dir : Path
        The run's output folder (``output.directory``), where ``run_summary.json`` and
        ``run_accounting.json`` are written.
    """
    summary_file = output_dir / "run_summary.json"
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, ValueError):
        return None
    seconds = [r.get("seconds") or 0.0 for r in summary.get("results", []) if r.get("status") == "written"]
    if not seconds:
        return None  # it only found complete files: nothing was measured
    history = History(summary_file, len(seconds), sum(seconds) / len(seconds))
    accounting_file = output_dir / "run_accounting.json"
    try:
        accounting = json.loads(accounting_file.read_text())
        totals, jobs = accounting["totals"], accounting.get("jobs") or []
    except (OSError, ValueError, KeyError, TypeError):
        return history
    startups = [j["startup"] for j in jobs if isinstance(j, dict) and j.get("startup") is not None]
    # Before its first file a run waits for a worker: in the queue, then while it starts.
    history.start_seconds = (totals.get("queue_wait_mean") or 0.0) + (
        sum(startups) / len(startups) if startups else 0.0)
    history.accounting_file = accounting_file
    history.core_hours = totals.get("core_hours")
    history.max_rss = totals.get("max_rss")
    history.failures = dict(totals.get("failures") or {})
    return history


def _job_script(kind: str, settings: Any) -> str:
    """dask-jobqueue's worker job script for ``settings``; the job is built, never submitted."""
    from distributed.security import Security

    from .batch_jobs import SubmissionLedger, tracked_cluster_class
    from .clusters import batch_cluster_kwargs

    security = None
    if settings.tls:
        # The run makes temporary credentials and writes them to shared_temp_directory; named
        # here by placeholders (no key is made, and none would belong in a printed script).
        folder = settings.shared_temp_directory or settings.log_directory or str(Path.cwd())
        security = Security(tls_ca_file=f"{folder}/<temporary CA>.pem",
                            tls_worker_cert=f"{folder}/<temporary cert>.pem",
                            tls_worker_key=f"{folder}/<temporary key>.pem", require_encryption=True)
    kwargs, _ = batch_cluster_kwargs(settings, JOB_NAME_PLACEHOLDER, security)
    for cluster_only in ("scheduler_options", "shared_temp_directory"):
        kwargs.pop(cluster_only, None)
    job_cls = tracked_cluster_class(kind, SubmissionLedger()).job_cls
    # dask-jobqueue's Job makes the log folder; a dry run leaves no trace, so remove what it made.
    log_dir = Path(kwargs["log_directory"]).absolute() if kwargs.get("log_directory") else None
    made = [] if log_dir is None else [d for d in (log_dir, *log_dir.parents) if not d.exists()]
    try:
        return job_cls(scheduler=SCHEDULER_PLACEHOLDER, **kwargs).job_script()
    finally:
        for folder in made:  # deepest first; only empty folders, only ones that were not there
            try:
                folder.rmdir()
            except OSError:
                break


def _cores_per_worker(settings: Any) -> int:
    cores = getattr(settings, "cores", None)
    if cores:
        return max(1, cores // settings.processes)
    return getattr(settings, "threads_per_worker", 1) or 1


def _estimate(seconds_per_file: float, todo: int, executor: Any, start_seconds: float = 0.0,
              core_hours_per_file: float | None = None) -> Estimate:
    """Wall time and core-hours of ``todo`` files at ``seconds_per_file`` on the run's workers
    (its scale, or its adapt maximum); core-hours are workers x cores x wall unless a past run
    says what a file was charged."""
    workers = max(1, executor.workers_wanted()[1])
    wall = start_seconds + seconds_per_file * todo / workers
    core_hours = (core_hours_per_file * todo if core_hours_per_file is not None
                  else wall * workers * _cores_per_worker(executor.cluster.settings) / 3600.0)
    return Estimate(wall, workers, core_hours)


def _limit_warnings(plan: RunPlan, executor: Any, files_per_step: int, seconds_per_file: float,
                    job_peak: int | None, measured: str, peak_said: str) -> list[str]:
    """Walltime and memory requests that look too small for what was measured.

    ``measured`` names the figures ("by history", "by the sample"); ``job_peak`` is the peak
    memory of one worker job they show, ``peak_said`` how it was found.
    """
    from dask.utils import parse_bytes

    if plan.cluster_kind not in ("slurm", "pbs") or plan.todo == 0:
        return []
    warnings = []
    s = executor.cluster.settings
    where = f"execution.config.cluster.{plan.cluster_kind}"
    files = min(files_per_step, plan.todo)
    step = seconds_per_file * files
    life = s.lifetime().lifetime
    if step > life:
        warnings.append(
            f"{where}.walltime: {s.walltime} lets a worker work {life} s, but one batch step of "
            f"{files} file(s) took ~{step:.0f} s {measured} ({seconds_per_file:.1f} s per file): "
            "raise the walltime or lower batching.files_per_step")
    asked = parse_bytes(s.memory)
    if job_peak is not None and job_peak > MEMORY_WARN_FRACTION * asked:
        warnings.append(f"{where}.memory: {s.memory} per job, but {peak_said} "
                        f"{job_peak / 2**30:.2f} GiB: raise memory (or set memory_on_oom_retry)")
    return warnings


def _estimate_and_warnings(plan: RunPlan, executor: Any, files_per_step: int) -> list[str]:
    history = plan.history
    if history is None or plan.todo == 0:
        return []
    plan.estimate = _estimate(history.seconds_per_file, plan.todo, executor,
                              history.start_seconds, history.core_hours_per_file)
    warnings = _limit_warnings(plan, executor, files_per_step, history.seconds_per_file,
                               history.max_rss, "by history",
                               "a worker job of the last run peaked at")
    if plan.cluster_kind in ("slurm", "pbs"):
        for failure in ("out_of_memory", "walltime"):
            if history.failures.get(failure):
                warnings.append(f"the last run had {history.failures[failure]} worker job(s) end by "
                                f"{failure.replace('_', ' ')} (see {history.accounting_file})")
    return warnings


def _sample_estimate_and_warnings(plan: RunPlan, executor: Any, files_per_step: int) -> list[str]:
    sample = plan.sample
    if sample is None:
        return []
    failed = [f for f in sample.files if f.status != "written"]
    warnings = [f"sample file {f.key} failed: {f.error}" for f in failed]
    if sample.seconds_per_file is None:
        return warnings + ["the sample wrote no file: no estimate from it (see the failures above)"]
    # The first file's extra (first-call costs) is paid once per worker, like its start-up.
    plan.sample_estimate = _estimate(sample.seconds_per_file, plan.todo, executor,
                                     sample.first_file_extra)
    peak = sample.peak_rss
    processes = getattr(executor.cluster.settings, "processes", 1)
    # A job runs `processes` worker processes, each one batch step at a time (as the sample did).
    job_peak = None if peak is None else peak * processes
    said = ("one sampled file's process peaked at" if processes == 1 or peak is None else
            f"one sampled file's process peaked at {peak / 2**30:.2f} GiB, x {processes} worker "
            "processes per job:")
    return warnings + _limit_warnings(plan, executor, files_per_step, sample.seconds_per_file,
                                      job_peak, "by the sample", said)


def _sample_notice(picked: list[Any], todo: int, job: Any, sizes: dict[str, int],
                   parent: str | Path | None) -> str:
    """What a sample will fetch, said before it starts: it is real data (a recall on tape)."""
    from .accounting import format_bytes

    how = (f" by tape/archive recall ({job.fetch.batch_command[0]})" if job.fetch.batch_command
           else "")
    lines = [f"sample: running {len(picked)} of the {todo} file(s) to do, one after another on "
             f"this node, into a temporary folder under {parent or tempfile.gettempdir()} (removed "
             f"afterwards; {job.output_dir} and its ledger are not touched, nothing is submitted). "
             f"It fetches for real{how}:"]
    for s in picked:
        size = f" ({format_bytes(sizes[s.url])})" if s.url in sizes else ""
        lines.append(f"    {s.key}: {redact_url(s.url)}{size}")
    if job.neighbour_step is not None:
        lines.append("  and each one's next file too (time windows cross files), as a batch does")
    return "\n".join(lines)


def make_plan(path: str | Path, *, head: int = 0, head_timeout: float = 3.0,
              job_name: str = "fetch_and_regrid", sample: int = 0,
              sample_dir: str | Path | None = None,
              announce: Callable[[str], None] | None = None) -> RunPlan:
    """Plan a run of the config file ``path`` without running or submitting anything.

    Parameters
    ----------
    path : str or Path
        A run config YAML (as for ``dagster job execute -c``).
    head : int
        At most this many HTTP HEAD requests for the sizes of http(s) files the manifest does
        not give a size for (0: none). Local files' sizes are read from the filesystem.
    head_timeout : float
        Seconds each HEAD request may take (connect and read).
    job_name : str
        A job of :data:`hpc_workflows.definitions.defs`.
    sample : int
        Run this many of the files to do first (0: none), evenly spread over them, each in a
        child process into a temporary folder (:mod:`hpc_workflows.hpc.sample_run`), and
        estimate from them too. They are fetched for real.
    sample_dir : str or Path, optional
        Where the sample's temporary folder goes (default: ``$TMPDIR``).
    announce : callable, optional
        Told what the sample will fetch, before it starts (the CLI prints it).

    Returns
    -------
    RunPlan

    Raises
    ------
    PlanError
        When the config is invalid (every problem, one per line, as ``check-config`` says them).
    SampleError
        When ``sample`` is out of range (above :data:`~hpc_workflows.hpc.sample_run.SAMPLE_MAX`
        or the files to do); raised before anything is fetched.
    """
    from hpc_workflows.batching import plan_work
    from hpc_workflows.config import BatchingConfig
    from hpc_workflows.pipeline.settings import batch_job, planned_sources

    from .sample_run import SampleError, check_sample_size, choose_sample, run_sample

    if sample:  # before the config is even read: bad input, no work
        check_sample_size(sample)
        if sample_dir is not None and not Path(sample_dir).is_dir():
            raise SampleError(f"--sample-dir: {sample_dir} is not a folder: create it, or leave "
                              "--sample-dir out for $TMPDIR")
    path = Path(path)
    cfg, executor, warnings = _resolved(path, job_name)
    sources = planned_sources(cfg)
    job = batch_job(cfg)
    work = plan_work(sources, job, (cfg.batching or BatchingConfig()).files_per_step)
    todo = [s for batch in work.batches for s in batch]
    sizes = {s.url: s.size for s in todo if s.size is not None}
    for s in todo:  # a local file's size costs one stat (the filesystem transport's sources)
        local = s.url.removeprefix("file://")
        if s.url not in sizes and "://" not in local and Path(local).is_file():
            sizes[s.url] = Path(local).stat().st_size
    if head > 0:
        unknown = [s.url for s in todo if s.size is None and s.url.startswith(("http://", "https://"))]
        sizes.update(_head_sizes(unknown, head, head_timeout))
    kind = executor.cluster.kind
    scripts: dict[str, tuple[str, str]] = {}
    pools = {"": executor, **executor.worker_pools}
    for pool, settings in pools.items():
        if settings.cluster.kind in ("slurm", "pbs"):
            scripts[pool] = (settings.cluster.kind,
                             _job_script(settings.cluster.kind, settings.cluster.settings))
    plan = RunPlan(
        config=path, files=len(sources), complete=len(work.complete), todo=work.todo,
        batches=len(work.batches), files_per_step=work.files_per_step,
        bytes_known=sum(sizes.get(s.url, 0) for s in todo),
        files_size_unknown=sum(1 for s in todo if s.url not in sizes),
        outputs=[i.path for s in todo for i in job.outputs_for(s).values()],
        cluster_kind=kind, job_scripts=scripts, history=read_history(cfg.output.directory_path),
        estimate=None, warnings=list(warnings),
    )
    plan.warnings += _estimate_and_warnings(plan, executor, work.files_per_step)
    if sample:
        picked = choose_sample(todo, sample)
        if announce is not None:
            announce(_sample_notice(picked, len(todo), job, sizes, sample_dir))
        # The pipeline passes every source of the run when windows cross files (neighbours).
        plan.sample = run_sample(picked, job, sources if job.neighbour_step is not None else None,
                                 parent=sample_dir)
        plan.warnings += _sample_estimate_and_warnings(plan, executor, work.files_per_step)
    return plan


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _format_sample(plan: RunPlan) -> list[str]:
    from .accounting import format_bytes

    sample = plan.sample
    assert sample is not None
    lines = [f"  sample: {len(sample.files)} file(s) run here one after another in one process, "
             "as on a worker (the first also pays first-call costs; peak RSS: the whole process, "
             "Python and libraries included)"]
    for f in sample.files:
        rss = format_bytes(f.peak_rss) if f.peak_rss is not None else "unknown"
        lines.append(f"    {f.key}: {f.status}, {f.wall_seconds:.2f} s wall, {f.cpu_seconds:.2f} s CPU, "
                     f"{rss} peak RSS, {format_bytes(f.bytes_fetched)} fetched")
    e, per_file = plan.sample_estimate, sample.seconds_per_file
    if e is not None and per_file is not None:
        cpu_hours = (sample.cpu_seconds_per_file or 0.0) * plan.todo / 3600.0
        fetch = format_bytes(int((sample.bytes_per_file or 0) * plan.todo))
        first = (f"{sample.first_file_extra:.2f} s more for a worker's first file + "
                 if sample.first_file_extra else "")
        lines.append(f"  estimate from the sample: ~{_duration(e.wall_seconds)} wall on {e.workers} "
                     f"worker(s), ~{e.core_hours:.3g} core-hours ({first}{per_file:.2f} s per file x "
                     f"{plan.todo} file(s) / {e.workers} worker(s); queue wait and worker start-up "
                     f"not included), ~{cpu_hours:.3g} CPU-hours of work, ~{fetch} to fetch")
    return lines


def format_plan(plan: RunPlan) -> str:
    """The plan as the ``plan`` command prints it."""
    from .accounting import format_bytes

    lines = [
        f"plan for {plan.config} (nothing submitted, nothing written)",
        f"  files: {plan.files} planned, {plan.complete} already complete, {plan.todo} to do "
        f"in {plan.batches} batch step(s) of up to {plan.files_per_step}",
    ]
    if plan.todo:
        size = format_bytes(plan.bytes_known) if plan.bytes_known else "unknown"
        lines.append(f"  bytes to fetch: {size}" + (
            f" ({plan.files_size_unknown} file(s) of unknown size)" if plan.files_size_unknown
            and plan.bytes_known else ""))
    lines.append(f"  outputs to write: {len(plan.outputs)}")
    lines += [f"    {redact_url(str(p))}" for p in plan.outputs[:OUTPUTS_SHOWN]]
    if len(plan.outputs) > OUTPUTS_SHOWN:
        lines.append(f"    ... and {len(plan.outputs) - OUTPUTS_SHOWN} more")
    h = plan.history
    if h is None:
        lines.append("  estimate: no history (no earlier run_summary.json in the output folder)")
    else:
        lines.append(f"  history: {h.files_written} file(s) written by the last run, "
                     f"{h.seconds_per_file:.2f} s per file, {h.start_seconds:.0f} s queue wait "
                     f"and worker start-up ({h.summary_file}"
                     + (f", {h.accounting_file})" if h.accounting_file else ")"))
    if plan.estimate is not None:
        e = plan.estimate
        label = "estimate from history" if plan.sample is not None else "estimate"
        lines.append(f"  {label}: ~{_duration(e.wall_seconds)} wall on {e.workers} worker(s), "
                     f"~{e.core_hours:.3g} core-hours")
    if plan.sample is not None:
        lines += _format_sample(plan)
    for pool, (kind, script) in plan.job_scripts.items():
        title = f"{kind} worker job script" + (f" of pool {pool}" if pool else "")
        lines += [f"  {title}, scheduler address and TLS files filled in at submission:", "",
                  script.rstrip(), ""]
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``hpc-workflows plan CONFIG [--head N] [--sample N]``: print the plan; 1 when the config
    or ``--sample`` is invalid."""
    import argparse
    import sys

    from .sample_run import SAMPLE_MAX, SampleError

    parser = argparse.ArgumentParser(
        prog="hpc-workflows plan",
        description="What a run of a config would do and cost. Nothing is submitted or written.")
    parser.add_argument("config", type=Path, help="run config YAML (as for dagster job execute -c)")
    parser.add_argument("--head", type=int, default=0, metavar="N",
                        help="ask at most N http(s) servers for sizes the manifest lacks (HEAD)")
    parser.add_argument("--head-timeout", type=float, default=3.0, metavar="SECONDS",
                        help="seconds each HEAD request may take (default 3)")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help=f"first run N (1 to {SAMPLE_MAX}) of the files to do, spread over "
                        "them, into a temporary folder, and estimate from them too: fetches real "
                        "data (a tape recall on an archive); outputs and ledger are not touched")
    parser.add_argument("--sample-dir", type=Path, default=None, metavar="DIR",
                        help="where the sample's temporary folder goes (default: $TMPDIR); it "
                        "must hold a file's download and scratch")
    args = parser.parse_args(argv)
    try:
        plan = make_plan(args.config, head=max(0, args.head), head_timeout=args.head_timeout,
                         sample=args.sample, sample_dir=args.sample_dir,
                         announce=lambda text: print(text, flush=True))
    except (PlanError, SampleError) as exc:
        print(str(exc).replace("\n", "\n  "), file=sys.stderr)
        return 1
    print(format_plan(plan))
    return 0
