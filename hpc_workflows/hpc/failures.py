"""Failure classes of a batch job that ran a Dask worker, each with its retry rule.

The scheduler's words for a lost job differ between sites and plugins: with cgroups SLURM says
``OUT_OF_MEMORY``; with ``JobAcctGatherParams=OverMemoryKill`` (the testbed) it says
``FAILED`` with signal 9 and a MaxRSS over the request. :func:`classify` reads State, ExitCode,
DerivedExitCode and the memory figures (from ``sacct``, or ``scontrol show job`` when there is
no accounting database) and names one class; :data:`RETRY_RULES` says what a run does about it.
Plain Python: no Dask or Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["FailureClass", "RetryRule", "RETRY_RULES", "classify", "OOM_FRACTION"]


class FailureClass(str, Enum):
    """Why a worker's batch job ended before the run was done with it."""

    OUT_OF_MEMORY = "out_of_memory"
    WALLTIME = "walltime"
    NODE_FAILURE = "node_failure"
    PREEMPTED = "preempted"
    KILLED = "killed"  # scancel/qdel, an administrator, or a signal from outside
    USER_ERROR = "user_error"  # the job's own code exited non-zero


@dataclass(frozen=True)
class RetryRule:
    """What a run does when a worker job ends with a failure class."""

    retry: bool
    rule: str


#: One rule per class (docs/production.md "Accounting" repeats them for users).
RETRY_RULES: dict[FailureClass, RetryRule] = {
    FailureClass.OUT_OF_MEMORY: RetryRule(
        False,
        "no retry with the same memory (it would be killed again): raise "
        "execution.config.cluster.<kind>.memory, or set memory_on_oom_retry there so that worker "
        "jobs started after an OOM kill ask for that much and the step reruns on one",
    ),
    FailureClass.WALLTIME: RetryRule(
        True, "retry on a fresh worker (a new job with a full walltime); if one step alone needs "
        "more than walltime - lifetime_margin, raise walltime",
    ),
    FailureClass.NODE_FAILURE: RetryRule(True, "retry on a fresh worker on another node"),
    FailureClass.PREEMPTED: RetryRule(True, "retry on a fresh worker once the batch system requeues"),
    FailureClass.KILLED: RetryRule(
        True, "retry on a fresh worker (Dask reruns the step, up to "
        "distributed.scheduler.allowed-failures); a cancel at the run's end is the cluster closing",
    ),
    FailureClass.USER_ERROR: RetryRule(False, "no retry: the same code fails again; see the job's log"),
}

#: A job killed by signal 9 whose peak RSS reached this share of its request was killed for
#: memory (sampling every few seconds sees less than the true peak, hence not 1.0).
OOM_FRACTION = 0.9


def _exit_parts(code: str | None) -> tuple[int, int]:
    """``"rc:signal"`` (sacct/scontrol) -> (rc, signal); (0, 0) when empty or unreadable."""
    try:
        rc, _, sig = (code or "0:0").partition(":")
        return int(rc or 0), int(sig or 0)
    except ValueError:
        return 0, 0


def classify(
    states: list[str],
    exit_codes: list[str],
    derived_exit_code: str | None = None,
    max_rss: int | None = None,
    req_mem: int | None = None,
) -> FailureClass | None:
    """The failure class of one batch job, or None when it ended well.

    Parameters
    ----------
    states : list of str
        The job's State and its steps' (``"CANCELLED by 0"`` is read as CANCELLED); the job's first.
    exit_codes : list of str
        ExitCode of the job and its steps, ``"rc:signal"``.
    derived_exit_code : str, optional
        sacct's DerivedExitCode (highest exit code of the job's steps).
    max_rss, req_mem : int, optional
        Peak resident memory of the job's largest step and the memory it asked for, in bytes.

    Returns
    -------
    FailureClass or None
    """
    words = {s.split()[0].upper().rstrip("+") for s in states if s and s.strip()}
    codes = [_exit_parts(c) for c in [*exit_codes, derived_exit_code or ""]]
    killed_9 = any(sig == 9 for _, sig in codes)
    over_memory = bool(max_rss and req_mem and max_rss >= OOM_FRACTION * req_mem)
    if "OUT_OF_MEMORY" in words or (killed_9 and over_memory):
        return FailureClass.OUT_OF_MEMORY
    if words & {"TIMEOUT", "DEADLINE"}:
        return FailureClass.WALLTIME
    if words & {"NODE_FAIL", "BOOT_FAIL"}:
        return FailureClass.NODE_FAILURE
    if "PREEMPTED" in words:
        return FailureClass.PREEMPTED
    if "CANCELLED" in words or "REVOKED" in words:
        return FailureClass.KILLED
    if "FAILED" in words or any(rc != 0 for rc, _ in codes):
        # A signal with no exit code is something from outside (kill -9 of the worker).
        if all(rc == 0 for rc, _ in codes) and any(sig for _, sig in codes):
            return FailureClass.KILLED
        return FailureClass.USER_ERROR
    return None
