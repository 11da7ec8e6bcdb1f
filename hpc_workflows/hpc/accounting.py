"""What each worker batch job of a run cost: queue wait, start-up, elapsed, peak memory, CPU
efficiency, core-hours, state and failure class; and the run's totals.

Sources, best first: SLURM's accounting (``sacct --parsable2``, needs slurmdbd; the testbed runs
one), PBS's ``qstat -x -f`` (PBS Pro keeps ended jobs; Torque and SLURM's Torque wrapper refuse
``-x``, so ``qstat -f`` next), and last the worker's own measurement (:func:`worker_usage`, run in
the worker process before the cluster closes: ``resource``/``psutil``), which is all a site
without an accounting database gives. Plain Python: the executor turns :func:`run_accounting`'s
result into an engine event and ``run_accounting.json``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .batch_jobs import qsub_is_slurm_wrapper
from .failures import RETRY_RULES, FailureClass, classify

__all__ = [
    "JobUsage", "RunAccounting", "sacct_usage", "pbs_usage", "worker_usage", "usage_from_worker",
    "run_accounting", "format_table", "format_bytes", "collect_worker_usage",
]

#: sacct fields read, in this order (``--parsable2``: "|"-separated, no trailing "|").
SACCT_FIELDS = (
    "JobIDRaw", "JobID", "State", "ExitCode", "DerivedExitCode", "Submit", "Start", "End",
    "ElapsedRaw", "TotalCPU", "AllocCPUS", "MaxRSS", "ReqMem", "NodeList", "Account", "Partition",
)
#: States after which a job's accounting no longer changes.
_FINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
          "BOOT_FAIL", "DEADLINE", "REVOKED"}
#: Seconds to wait, once a job is final, for its batch step's MaxRSS/CPU time to be recorded.
USAGE_WAIT = 5.0
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


@dataclass
class JobUsage:
    """One batch job's accounting. Times in seconds, memory in bytes; None: not known."""

    job_id: str
    source: str  # "sacct", "qstat" or "worker"
    state: str = "UNKNOWN"
    exit_code: str | None = None
    node: str | None = None
    queue_wait: float | None = None  # submit -> start
    startup: float | None = None  # job start -> worker process running its first line
    elapsed: float | None = None
    cores: int | None = None
    cpu_time: float | None = None
    max_rss: int | None = None
    req_mem: int | None = None
    failure: FailureClass | None = None

    @property
    def core_hours(self) -> float | None:
        """Cores held times elapsed (what a site charges), in hours."""
        if self.elapsed is None or not self.cores:
            return None
        return self.elapsed * self.cores / 3600.0

    @property
    def cpu_efficiency(self) -> float | None:
        """CPU time used / (cores x elapsed), 0..1."""
        if self.cpu_time is None or not self.elapsed or not self.cores:
            return None
        return self.cpu_time / (self.elapsed * self.cores)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (with the derived figures and the retry rule) for JSON and metadata."""
        out = asdict(self)
        out["failure"] = self.failure.value if self.failure else None
        out["retry_rule"] = RETRY_RULES[self.failure].rule if self.failure else None
        out["core_hours"] = self.core_hours
        out["cpu_efficiency"] = self.cpu_efficiency
        return out


@dataclass
class RunAccounting:
    """Every worker job of a run, and the run's totals."""

    jobs: list[JobUsage] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        """Sums, maxima and the CPU efficiency over all jobs (time-weighted)."""
        core_seconds = sum(j.elapsed * j.cores for j in self.jobs if j.elapsed is not None and j.cores)
        cpu = sum(j.cpu_time for j in self.jobs if j.cpu_time is not None and j.elapsed and j.cores)
        waits = [j.queue_wait for j in self.jobs if j.queue_wait is not None]
        failures: dict[str, int] = {}
        for j in self.jobs:
            if j.failure:
                failures[j.failure.value] = failures.get(j.failure.value, 0) + 1
        rss = [j.max_rss for j in self.jobs if j.max_rss is not None]
        return {
            "jobs": len(self.jobs),
            "core_hours": core_seconds / 3600.0,
            "cpu_time": cpu,
            "cpu_efficiency": cpu / core_seconds if core_seconds else None,
            "queue_wait_max": max(waits) if waits else None,
            "queue_wait_mean": sum(waits) / len(waits) if waits else None,
            "max_rss": max(rss) if rss else None,
            "failures": failures,
            "sources": sorted({j.source for j in self.jobs}),
        }

    def as_dict(self) -> dict[str, Any]:
        """``run_accounting.json``'s content."""
        return {"jobs": [j.as_dict() for j in self.jobs], "totals": self.totals()}


def parse_size(text: str | None, cores: int | None = None) -> int | None:
    """sacct's sizes (``424776K``, ``100M``, ``2Gn``, ``1000Mc``) in bytes; ``c`` = per CPU."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]?)(?:i?B)?([nc]?)\s*", text or "", flags=re.I)
    if not match:
        return None
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if match.group(3).lower() == "c" and cores:
        value *= cores
    return int(value)


def parse_duration(text: str | None) -> float | None:
    """``[DD-][HH:]MM:SS[.mmm]`` (sacct's TotalCPU, PBS's walltime/cput) in seconds."""
    if not text or not re.fullmatch(r"(\d+-)?[\d:.]+", text.strip()):
        return None
    days, _, rest = text.strip().rpartition("-")
    parts = [float(p) for p in rest.split(":")]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds + (int(days) * 86400 if days else 0)


def _time(text: str | None) -> datetime | None:
    if not text or text in ("Unknown", "None"):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%a %b %d %H:%M:%S %Y"):
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    return None


def _seconds_between(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a and b and b >= a else None


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def parse_sacct(text: str) -> dict[str, JobUsage]:
    """``sacct --parsable2 --noheader --format=<SACCT_FIELDS>`` output -> usage per job id."""
    rows: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        values = line.split("|")
        if len(values) != len(SACCT_FIELDS):
            continue
        row = dict(zip(SACCT_FIELDS, values))
        rows.setdefault(row["JobID"].split(".")[0], []).append(row)
    usage: dict[str, JobUsage] = {}
    for job_id, job_rows in rows.items():
        job = next((r for r in job_rows if "." not in r["JobID"]), job_rows[0])
        cores = int(job["AllocCPUS"]) if job["AllocCPUS"].isdigit() else None
        rss = [parse_size(r["MaxRSS"]) for r in job_rows]
        rss_known = [r for r in rss if r is not None]
        max_rss = max(rss_known) if rss_known else None
        req_mem = parse_size(job["ReqMem"], cores)
        states = [job["State"], *(r["State"] for r in job_rows if r is not job)]
        codes = [job["ExitCode"], *(r["ExitCode"] for r in job_rows if r is not job)]
        submit, start, end = _time(job["Submit"]), _time(job["Start"]), _time(job["End"])
        usage[job_id] = JobUsage(
            job_id=job_id,
            source="sacct",
            state=job["State"].split()[0] if job["State"] else "UNKNOWN",
            exit_code=job["ExitCode"] or None,
            node=job["NodeList"] if job["NodeList"] not in ("", "None assigned") else None,
            queue_wait=_seconds_between(submit, start),
            elapsed=float(job["ElapsedRaw"]) if job["ElapsedRaw"].isdigit() else _seconds_between(start, end),
            cores=cores,
            cpu_time=parse_duration(job["TotalCPU"]),
            max_rss=max_rss,
            req_mem=req_mem,
            failure=classify(states, codes, job["DerivedExitCode"], max_rss, req_mem),
        )
    return usage


def _all_rows_final(text: str) -> bool:
    """Every job and step final, and every job that started has its batch step's record (which
    carries CPU time and MaxRSS, and reaches slurmdbd after the job's own state)."""
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in text.splitlines()
            if line.count("|") == len(SACCT_FIELDS) - 1]
    started = {r["JobID"] for r in rows if "." not in r["JobID"] and r["Start"] not in ("", "Unknown", "None")}
    with_batch = {r["JobID"].split(".")[0] for r in rows if r["JobID"].endswith(".batch")}
    return started <= with_batch and all(r["State"].split()[0] in _FINAL for r in rows if r["State"])


def _usage_recorded(text: str) -> bool:
    """Every batch step has its MaxRSS (a step too short to be sampled never gets one)."""
    return all(line.split("|")[SACCT_FIELDS.index("MaxRSS")] for line in text.splitlines()
               if line.count("|") == len(SACCT_FIELDS) - 1 and line.split("|")[1].endswith(".batch"))


def sacct_usage(job_ids: Iterable[str], wait: float = 15.0) -> dict[str, JobUsage]:
    """``sacct`` figures for ``job_ids``; waits (bounded) until each has a final state.

    Returns only the jobs sacct knows: an empty dict where there is no accounting database.
    """
    ids = [str(j) for j in job_ids]
    if not ids:
        return {}
    cmd = ["sacct", "--parsable2", "--noheader", "--duplicates", "-j", ",".join(ids),
           f"--format={','.join(SACCT_FIELDS)}"]
    deadline = time.monotonic() + wait
    usage_deadline: float | None = None
    while True:
        out = _run(cmd)
        if out is None or out.returncode != 0:
            return {}
        usage = parse_sacct(out.stdout)
        # A job cancelled a moment ago is still COMPLETING/RUNNING in the database, and its
        # steps' CPU time and MaxRSS arrive after the job's own state: wait for every row.
        if time.monotonic() > deadline:
            return usage
        if _all_rows_final(out.stdout):
            # The step's usage (CPU, MaxRSS) can reach slurmdbd a moment after its final state.
            usage_deadline = usage_deadline or min(deadline, time.monotonic() + USAGE_WAIT)
            if _usage_recorded(out.stdout) or time.monotonic() > usage_deadline:
                return usage
        time.sleep(0.5)


def parse_qstat_f(text: str, job_id: str) -> JobUsage | None:
    """One job of PBS ``qstat [-x] -f`` output (PBS Pro or Torque) -> usage; None if absent."""
    if "job_state" not in text:
        return None
    f = dict(re.findall(r"^\s*([\w.]+) = (.*)$", text, flags=re.M))
    cores = f.get("Resource_List.ncpus") or f.get("resources_used.ncpus")
    ncores = int(cores) if cores and cores.isdigit() else None
    submit, start = _time(f.get("qtime")), _time(f.get("stime") or f.get("start_time"))
    exit_status = f.get("Exit_status")
    state = {"F": "FINISHED", "C": "COMPLETED", "R": "RUNNING", "Q": "PENDING", "E": "EXITING"}.get(
        f.get("job_state", ""), f.get("job_state", "UNKNOWN"))
    rc = int(exit_status) if exit_status and exit_status.lstrip("-").isdigit() else 0
    # Exit_status > 256: killed by signal (status - 256). Negative: PBS Pro's own kills
    # (JOB_EXEC_KILL_*: -29 walltime, -27 mem, -26 vmem), written as the SLURM state that
    # classify() knows. Checked against PBS Pro's documentation only: no PBS Pro server here.
    states = [state, {-29: "TIMEOUT", -27: "OUT_OF_MEMORY", -26: "OUT_OF_MEMORY"}.get(rc, "")]
    if "walltime" in f.get("comment", "").lower():
        states.append("TIMEOUT")
    code = f"0:{rc - 256}" if rc > 256 else f"{rc}:0"
    max_rss = parse_size((f.get("resources_used.mem") or "").replace("kb", "K").replace("b", ""))
    req_mem = parse_size((f.get("Resource_List.mem") or "").replace("gb", "G").replace("mb", "M").replace("kb", "K"))
    return JobUsage(
        job_id=job_id,
        source="qstat",
        state=state,
        exit_code=code if exit_status is not None else None,
        node=(f.get("exec_host") or "").split("/")[0] or None,
        queue_wait=_seconds_between(submit, start),
        elapsed=parse_duration(f.get("resources_used.walltime")),
        cores=ncores,
        cpu_time=parse_duration(f.get("resources_used.cput")),
        max_rss=max_rss,
        req_mem=req_mem,
        failure=classify(states, [code], None, max_rss, req_mem) if exit_status is not None else None,
    )


def pbs_usage(job_ids: Iterable[str]) -> dict[str, JobUsage]:
    """``qstat -x -f`` per job, then ``qstat -f`` where ``-x`` is refused (Torque, SLURM wrapper)."""
    usage: dict[str, JobUsage] = {}
    for job_id in job_ids:
        for cmd in (["qstat", "-x", "-f", job_id], ["qstat", "-f", job_id]):
            out = _run(cmd)
            if out is not None and out.returncode == 0:
                parsed = parse_qstat_f(out.stdout, job_id)
                if parsed is not None:
                    usage[job_id] = parsed
                    break
    return usage


def worker_usage() -> dict[str, Any]:
    """Measured inside a worker process (run it there, e.g. ``client.run(worker_usage)``).

    The fallback where the batch system keeps no accounting: peak RSS and CPU time of the
    worker process and its children (``resource``), how long it has run and how long after its
    job started it came up (``psutil``), and the job id from the environment.
    """
    import resource

    import psutil

    me = psutil.Process()
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    kids_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID") or ""
    # The job's first process (its batch script) started when the job did.
    started = me.create_time()
    job_start = started
    for parent in me.parents():
        if job_id and parent.name() in ("slurmstepd", "pbs_mom", "pbs_demux"):
            break
        job_start = parent.create_time()
    return {
        "job_id": job_id.split(".")[0],
        "host": os.uname().nodename,
        "max_rss": max(self_ru.ru_maxrss, kids_ru.ru_maxrss) * 1024,  # Linux: KiB
        "cpu_time": self_ru.ru_utime + self_ru.ru_stime + kids_ru.ru_utime + kids_ru.ru_stime,
        "elapsed": time.time() - job_start,
        "startup": started - job_start,
        "cores": len(me.cpu_affinity()) if hasattr(me, "cpu_affinity") else os.cpu_count(),
    }


def collect_worker_usage(client: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """:func:`worker_usage` of every worker still connected (call before the cluster closes).

    Never raises: a cluster that is going away yields what it can ([] at worst).
    """
    import concurrent.futures

    # Client.run has no timeout of its own: a hung worker must not hang the run's teardown.
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hpcw-usage")
    try:
        future = pool.submit(client.run, worker_usage, on_error="ignore")
        return [r for r in future.result(timeout=timeout).values() if isinstance(r, dict)]
    except Exception:  # noqa: BLE001 - a fallback measurement must not break the run's teardown
        return []
    finally:
        pool.shutdown(wait=False)


def usage_from_worker(report: Mapping[str, Any]) -> JobUsage:
    """A :func:`worker_usage` report as a :class:`JobUsage` (state unknown to the worker)."""
    return JobUsage(
        job_id=str(report.get("job_id") or "?"),
        source="worker",
        state="REPORTED",
        node=report.get("host"),
        startup=report.get("startup"),
        elapsed=report.get("elapsed"),
        cores=report.get("cores"),
        cpu_time=report.get("cpu_time"),
        max_rss=report.get("max_rss"),
    )


def run_accounting(
    kind: str,
    job_ids: Iterable[str],
    worker_reports: Iterable[Mapping[str, Any]] = (),
    wait: float = 15.0,
) -> RunAccounting:
    """Accounting of one run's worker jobs, from the best source each job has.

    Parameters
    ----------
    kind : {"slurm", "pbs", "local", "existing"}
        The cluster kind; only batch kinds have scheduler accounting.
    job_ids : iterable of str
        The run's worker jobs (``SubmissionLedger.job_ids``).
    worker_reports : iterable of mapping
        :func:`worker_usage` reports collected before the cluster closed (fallback, and the only
        source of start-up time).
    wait : float
        Seconds to wait for just-ended jobs to reach a final state in the accounting.
    """
    ids = list(dict.fromkeys(str(j) for j in job_ids))
    found: dict[str, JobUsage] = {}
    if kind == "slurm" or (kind == "pbs" and qsub_is_slurm_wrapper()):
        found = sacct_usage(ids, wait=wait)
    if kind == "pbs":
        found.update(pbs_usage([j for j in ids if j not in found or found[j].elapsed is None]))
    # Several worker processes per job: their memory and CPU add up, the job lasts the longest.
    by_worker: dict[str, dict[str, Any]] = {}
    for r in worker_reports:
        if not r.get("job_id"):
            continue
        seen = by_worker.setdefault(str(r["job_id"]), dict(r))
        if seen is not r and seen.get("_n"):
            for name in ("max_rss", "cpu_time"):
                seen[name] = (seen.get(name) or 0) + (r.get(name) or 0)
            for name in ("elapsed", "startup"):
                seen[name] = max(seen.get(name) or 0, r.get(name) or 0)
        seen["_n"] = seen.get("_n", 0) + 1
    jobs: list[JobUsage] = []
    for job_id in ids:
        report = by_worker.get(job_id.split(".")[0])
        usage = found.get(job_id) or found.get(job_id.split(".")[0])
        if usage is None:
            if report is None:
                jobs.append(JobUsage(job_id=job_id, source="none"))
                continue
            usage = usage_from_worker(report)
            usage.job_id = job_id
        else:
            usage.startup = report.get("startup") if report else None
            if report and usage.failure is FailureClass.KILLED:
                # Its worker answered when the cluster closed: the cancel was the run's own
                # teardown (dask-jobqueue's scancel/qdel), not a lost worker.
                usage.failure = None
            # The scheduler's figures win; the worker's fill what it lacks (e.g. Torque's qstat).
            if report:
                for name in ("elapsed", "cpu_time", "max_rss", "cores"):
                    if getattr(usage, name) is None and report.get(name) is not None:
                        setattr(usage, name, report[name])
        jobs.append(usage)
    return RunAccounting(jobs)


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 600 else f"{value / 60:.1f} min"


def format_bytes(value: int | None) -> str:
    """Bytes in KiB/MiB/GiB for people; "-" when unknown."""
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def format_table(acct: RunAccounting) -> str:
    """A Markdown table of the jobs and a totals line, for the event log and the docs."""
    head = ("| job | state | failure | node | queue wait | start-up | elapsed | cores | "
            "core-h | CPU eff. | MaxRSS / asked |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for j in acct.jobs:
        eff = f"{j.cpu_efficiency:.0%}" if j.cpu_efficiency is not None else "-"
        ch = f"{j.core_hours:.4f}" if j.core_hours is not None else "-"
        lines.append(
            f"| {j.job_id} | {j.state} {j.exit_code or ''} | {j.failure.value if j.failure else '-'} "
            f"| {j.node or '-'} | {_fmt_seconds(j.queue_wait)} | {_fmt_seconds(j.startup)} "
            f"| {_fmt_seconds(j.elapsed)} | {j.cores or '-'} | {ch} | {eff} "
            f"| {format_bytes(j.max_rss)} / {format_bytes(j.req_mem)} |"
        )
    t = acct.totals()
    eff = f"{t['cpu_efficiency']:.0%}" if t["cpu_efficiency"] is not None else "-"
    fails = ", ".join(f"{k}: {v}" for k, v in sorted(t["failures"].items())) or "none"
    lines.append(
        f"\nRun: {t['jobs']} worker jobs, {t['core_hours']:.4f} core-hours, CPU efficiency {eff}, "
        f"longest queue wait {_fmt_seconds(t['queue_wait_max'])}, peak RSS {format_bytes(t['max_rss'])}, "
        f"failures: {fails} (source: {', '.join(t['sources']) or '-'})"
    )
    return "\n".join(lines)
