"""Say why a step runs again: which worker it lost, which batch job and node that was, and why.

When a worker leaves while it runs a step (its job was cancelled, hit its walltime, its node
failed, it ran out of memory), Dask quietly runs the step again elsewhere; without this the
run's event log only shows the step starting twice. A scheduler plugin (the scheduler runs in
the coordinator's process) notes each worker that leaves with tasks still running, the
orchestrator asks the batch system about the worker's job (``scontrol show job`` works for
recently ended jobs without an accounting database; ``qstat -x -f`` on PBS) and writes one
WARNING per affected step to the run's event log, which the console shows too.
"""

from __future__ import annotations

import queue
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dask.config
from distributed.diagnostics.plugin import SchedulerPlugin

from .accounting import format_bytes, pbs_usage, sacct_usage
from .batch_jobs import SubmissionLedger, qsub_is_slurm_wrapper
from .failures import RETRY_RULES, FailureClass

#: What each final SLURM job state means for the user (JobState of ``scontrol show job``).
SLURM_STATE_MEANING = {
    "CANCELLED": "cancelled by scancel/qdel, yours or an administrator's",
    "TIMEOUT": "walltime reached while the step ran: raise walltime (a step must fit in "
               "walltime - lifetime_margin)",
    "NODE_FAIL": "node failure",
    "OUT_OF_MEMORY": "out of memory: raise memory in execution.config.cluster",
    "FAILED": "the job failed (non-zero exit): see its log in log_directory",
    "PREEMPTED": "preempted by the batch system",
    "BOOT_FAIL": "the node failed to boot",
    "DEADLINE": "the job's deadline passed",
    "COMPLETED": "the job ended (its worker exited)",
}
_STILL_GOING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "SUSPENDED"}
#: Seconds to wait for the batch system to record a final state (scancel shows COMPLETING first).
FATE_WAIT = 5.0


@dataclass(frozen=True)
class LostWorker:
    """A worker that left the scheduler while running tasks."""

    address: str
    name: str | None
    host: str | None
    keys: frozenset[str]


class WorkerLossWatch(SchedulerPlugin):
    """Scheduler plugin: queue every worker that leaves while tasks are running on it."""

    name = "hpc-workflows-worker-loss"

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, str]] = {}  # address -> (worker name, host)
        self.lost: queue.SimpleQueue[LostWorker] = queue.SimpleQueue()

    def remember(self, address: str, worker_state: Any) -> None:
        self._known[address] = (str(worker_state.name), str(worker_state.host))

    def add_worker(self, scheduler: Any, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        if ws is not None:
            self.remember(worker, ws)

    def log_event(self, topic: str, msg: Any) -> None:
        # The scheduler publishes "remove-worker" with the tasks the worker was processing,
        # before it forgets them (remove_worker hooks run after they are released).
        if topic != "all" or not isinstance(msg, dict) or msg.get("action") != "remove-worker":
            return
        address = str(msg.get("worker", ""))
        name, host = self._known.pop(address, (None, None))
        keys = frozenset(str(k) for k in msg.get("processing-tasks") or ())
        if keys:
            self.lost.put(LostWorker(address, name, host, keys))


@dataclass(frozen=True)
class JobFate:
    """What the batch system says about a job: state, node, a reason in words, failure class."""

    state: str
    node: str | None
    reason: str
    failure: FailureClass | None = None


def _fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\S+?)=(\S*)", text))


def slurm_job_fate(job_id: str, wait: float = FATE_WAIT) -> JobFate | None:
    """``scontrol show job`` of a (recently) ended job; None once SLURM forgot it (MinJobAge)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            out = subprocess.run(["scontrol", "show", "job", "-o", job_id],
                                 capture_output=True, text=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode != 0:
            return None
        f = _fields(out.stdout)
        state = f.get("JobState", "UNKNOWN")
        # scancel shows COMPLETING for a moment before CANCELLED; poll (bounded) for the final word.
        if state not in _STILL_GOING or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    node = f.get("NodeList") or f.get("BatchHost")
    if state in _STILL_GOING:
        reason = (f"job still {state}: the worker process itself died or lost its connection "
                  "(e.g. killed for memory inside the job); see its log in log_directory")
    else:
        reason = SLURM_STATE_MEANING.get(state, state.lower())
    said = [f"{k}={f[k]}" for k in ("JobState", "Reason", "ExitCode") if f.get(k) not in (None, "", "None")]
    reason += f" (scontrol: {', '.join(said)})"
    return JobFate(state, node if node not in ("", "(null)") else None, reason)


def pbs_job_fate(job_id: str) -> JobFate | None:
    """``qstat -x -f`` (PBS Pro keeps ended jobs) or ``qstat -f``; None if neither knows the job."""
    for cmd in (["qstat", "-x", "-f", job_id], ["qstat", "-f", job_id]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode == 0 and "job_state" in out.stdout:
            f = dict(re.findall(r"^\s*(\w+(?:\.\w+)?) = (.*)$", out.stdout, flags=re.M))
            node = (f.get("exec_host") or "").split("/")[0] or None
            said = [f"{k}={f[k]}" for k in ("job_state", "Exit_status", "comment") if f.get(k)]
            return JobFate(f.get("job_state", "?"), node, f"ended (qstat: {', '.join(said)})")
    return None


def job_fate(kind: str, job_id: str) -> JobFate | None:
    """The batch system's account of job ``job_id`` (``kind``: "slurm" or "pbs"), with its
    failure class (:mod:`.failures`) from the accounting where there is one."""
    on_slurm = kind == "slurm" or (kind == "pbs" and qsub_is_slurm_wrapper())
    if on_slurm:
        fate = slurm_job_fate(job_id)  # the Torque-style wrapper's qstat has no end reason
    elif kind == "pbs":
        fate = pbs_job_fate(job_id)
    else:
        return None
    # sacct (slurmdbd) knows MaxRSS, which tells an OverMemoryKill (FAILED, signal 9) from a kill.
    usage = (sacct_usage([job_id], wait=FATE_WAIT) if on_slurm else pbs_usage([job_id])).get(job_id)
    if usage is None or usage.failure is None:
        return fate
    if fate is None:
        fate = JobFate(usage.state, usage.node, SLURM_STATE_MEANING.get(usage.state, usage.state.lower()))
    reason = fate.reason
    if usage.failure is FailureClass.OUT_OF_MEMORY and fate.state != "OUT_OF_MEMORY":
        reason = f"{SLURM_STATE_MEANING['OUT_OF_MEMORY']} (peak RSS {format_bytes(usage.max_rss)} of {format_bytes(usage.req_mem)} asked; {reason})"
    reason += f" [failure class {usage.failure.value}: {RETRY_RULES[usage.failure].rule}]"
    return JobFate(fate.state, fate.node, reason, usage.failure)


def describe_loss(kind: str, lost: LostWorker, job_id: str | None, fate: JobFate | None) -> str:
    """Which worker was lost and why, for the event log (no trailing period)."""
    who = f"{lost.name or '?'} ({lost.address})"
    if job_id is None:
        if kind == "local":
            return f"{who}, a local worker process on {lost.host or '?'}, which died or was killed"
        return f"{who}, which left the cluster"
    label = {"slurm": "SLURM", "pbs": "PBS"}.get(kind, kind)
    if fate is None:
        return (f"{who}, {label} job {job_id} on {lost.host or '?'}, which left the cluster; "
                "the batch system no longer reports the job")
    return f"{who}, {label} job {job_id} on node {fate.node or lost.host or '?'}, which was lost: {fate.reason}"


class WorkerLossReporter:
    """Explains, step by step, the workers one run's cluster lost while they ran its steps.

    Parameters
    ----------
    kind : str
        "local", "slurm", "pbs" or "existing".
    cluster : object or None
        The cluster whose scheduler runs in this process (None: an existing scheduler, not
        watched).
    ledger : SubmissionLedger
        The cluster's submitted jobs, to map a worker name to its batch job id.
    """

    def __init__(self, kind: str, cluster: Any | None, ledger: SubmissionLedger):
        self._kind = kind
        self._ledger = ledger
        self._cluster = cluster
        self._watch = WorkerLossWatch()
        self._losses: dict[str, int] = {}
        self._allowed = int(dask.config.get("distributed.scheduler.allowed-failures", 3))
        scheduler = getattr(cluster, "scheduler", None)
        loop = getattr(cluster, "loop", None)
        if scheduler is not None and hasattr(scheduler, "add_plugin") and loop is not None:
            # On the scheduler's own event loop: its plugin dict is read there.
            loop.add_callback(self._install, scheduler)

    def _install(self, scheduler: Any) -> None:
        scheduler.add_plugin(self._watch, name=WorkerLossWatch.name)
        for address, ws in list(scheduler.workers.items()):  # local workers start before us
            self._watch.remember(address, ws)

    def _more_memory(self) -> str:
        """After an OOM kill: later worker jobs ask for ``memory_on_oom_retry``, if set."""
        wanted = self._ledger.memory_on_oom_retry
        # dask-jobqueue builds each new job from new_spec["options"] (the cluster's job kwargs).
        options = (getattr(self._cluster, "new_spec", None) or {}).get("options")
        if not wanted or options is None:
            return ""
        if options.get("memory") != wanted:
            options["memory"] = wanted
        return f"; worker jobs started from now on ask for {wanted} (memory_on_oom_retry)"

    def poll(self, running: Mapping[Any, str]) -> Iterator[tuple[str, str]]:
        """(step key, message) for each running step whose worker was lost since the last call.

        ``running`` maps each submitted future (its ``.key`` is the Dask key) to its step key.
        """
        if self._watch.lost.empty():
            return
        by_key = {str(f.key): step for f, step in running.items()}
        while not self._watch.lost.empty():
            lost = self._watch.lost.get()
            steps = sorted({by_key[k] for k in lost.keys if k in by_key})
            if not steps:
                continue  # another run's tasks on a shared scheduler
            job_id = self._ledger.job_for_worker(lost.name) if lost.name else None
            fate = job_fate(self._kind, job_id) if job_id else None
            what = describe_loss(self._kind, lost, job_id, fate)
            if fate is not None and fate.failure is FailureClass.OUT_OF_MEMORY:
                what += self._more_memory()
            for step in steps:
                n = self._losses[step] = self._losses.get(step, 0) + 1
                then = ("Dask runs the step again on another worker" if n <= self._allowed else
                        f"the step has lost {n} workers, more than distributed.scheduler."
                        f"allowed-failures={self._allowed}: it fails (KilledWorker)")
                # "was on": Dask may also have queued the step there before it started.
                yield step, f'Step "{step}" was on worker {what}. {then}.'
