"""Dagster's automatic run retries, only for runs whose coordinator job the batch system lost.

Dagster's daemon re-executes a failed run (``run_retries`` in ``dagster.yaml``, run tags
``dagster/max_retries`` and ``dagster/retry_strategy``) when the run's ``dagster/max_retries``
allows it at the moment its failure is recorded. It cannot tell a coordinator lost to the batch
system (walltime, node failure, preemption, an administrator's ``scancel``: worth resuming) from
one that failed on its own (user code, bad data, a config error: the same error again, and a
wasted allocation). So the launcher holds the run's retry budget in :data:`BUDGET_TAG` and sets
``dagster/max_retries`` to 0 when it submits the run; only the code that sees the batch system
end the job (run monitoring's health check, the coordinator job's SIGTERM handler) sets it back
to the budget, *before* the run's failure is recorded. Which job ends count as lost is
:data:`~hpc_workflows.hpc.failures.RETRY_RULES`, the rule the executor applies to worker jobs,
except the owner's own ``scancel``, which means stop.

The tag names are Dagster's public ones, written out so this module imports no Dagster (the
coordinator job imports it before it starts the run, and must start it fast); tests check
they match.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .failures import RETRY_RULES, FailureClass, classify
from .scheduler_cli import JobState

if TYPE_CHECKING:
    from dagster import DagsterInstance
    from dagster._core.storage.dagster_run import DagsterRun

__all__ = ["BUDGET_TAG", "MAX_RETRIES_TAG", "RETRY_STRATEGY_TAG", "WILL_RETRY_TAG", "STRATEGIES", "JobLoss",
           "RetrySettingError", "arm_retry", "launch_tags", "job_loss"]

#: The run's retry budget (whole number), kept while ``dagster/max_retries`` says 0.
BUDGET_TAG = "hpc_workflows/retries_on_job_loss"
MAX_RETRIES_TAG = "dagster/max_retries"  # dagster._core.storage.tags.MAX_RETRIES_TAG
RETRY_STRATEGY_TAG = "dagster/retry_strategy"  # dagster._core.storage.tags.RETRY_STRATEGY_TAG
WILL_RETRY_TAG = "dagster/will_retry"  # dagster._core.storage.tags.WILL_RETRY_TAG
#: Dagster's ReexecutionStrategy names that apply to a job (FROM_ASSET_FAILURE is for assets).
STRATEGIES = ("FROM_FAILURE", "ALL_STEPS")


class RetrySettingError(ValueError):
    """A run's retry tag has a value Dagster would silently ignore."""


def _whole_number(tags: Mapping[str, str], name: str) -> int | None:
    if name not in tags:
        return None
    text = str(tags[name]).strip()
    if not text.isdigit():
        raise RetrySettingError(
            f"run tag {name}: {tags[name]!r} is not a whole number: write e.g. '2' (0 = never retry)"
        )
    return int(text)


def launch_tags(tags: Mapping[str, str], enabled: bool, max_retries: int) -> dict[str, str]:
    """Tags the launcher adds to a run before submitting it: the budget kept, Dagster's disarmed.

    Parameters
    ----------
    tags
        The run's tags (a retried run carries its parent's, budget included).
    enabled, max_retries
        ``run_retries.enabled`` and ``run_retries.max_retries`` of the instance.

    Returns
    -------
    dict
        ``{}`` when run retries are off; else :data:`BUDGET_TAG`, ``dagster/max_retries: 0``
        and, unless the run names one, ``dagster/retry_strategy: ALL_STEPS``.

    Raises
    ------
    RetrySettingError
        A bad ``dagster/max_retries``, ``dagster/retry_strategy`` or budget tag, named.
    """
    budget = _whole_number(tags, BUDGET_TAG)
    requested = _whole_number(tags, MAX_RETRIES_TAG)
    strategy = tags.get(RETRY_STRATEGY_TAG)
    if strategy is not None and strategy not in STRATEGIES:
        raise RetrySettingError(
            f"run tag {RETRY_STRATEGY_TAG}: {strategy!r} is not a strategy: write FROM_FAILURE "
            "(rerun the failed and unfinished steps, the default) or ALL_STEPS"
        )
    if not enabled:
        return {}
    if budget is None:  # a first run: its own tag, else the instance's setting
        budget = max_retries if requested is None else requested
    added = {BUDGET_TAG: str(budget), MAX_RETRIES_TAG: "0"}
    if strategy is None:
        # Dagster's default, FROM_FAILURE, drops the mapped steps of a DynamicOut that never
        # started in the lost run (seen on the testbed with Dagster 1.13: the retry ran the
        # `collect` step with 3 of 4 inputs and succeeded). ALL_STEPS replans; the ledger
        # then skips every output already complete, so finished files are not redone.
        added[RETRY_STRATEGY_TAG] = "ALL_STEPS"
    return added


@dataclass(frozen=True)
class JobLoss:
    """Whether a coordinator job's end is a loss worth an automatic retry, and why in words."""

    retry: bool
    why: str


def job_loss(state: JobState, owner_uid: int | None = None) -> JobLoss:
    """Classify the end (or SIGTERM) of a coordinator job by the batch system's word.

    Parameters
    ----------
    state
        The job's state as the scheduler reports it.
    owner_uid
        The job owner's uid (default: this process's, which submitted or runs the job).

    Returns
    -------
    JobLoss
        ``retry`` for walltime, node failure, preemption and kills from outside; not for an
        out-of-memory kill (the same memory fails again), a non-zero exit of the job's own
        code, or the owner's own ``scancel`` (which means stop).
    """
    owner = os.getuid() if owner_uid is None else owner_uid
    if state.cancelled_by is not None and state.cancelled_by == owner:
        return JobLoss(False, f"{state.describe()}: cancelled by its owner, which means stop")
    failure = classify([state.state], [state.exit_code])
    if failure is None and not state.says_who_cancelled:
        # PBS's qstat never says who ended a job: an unexplained end may be the owner's qdel,
        # and resuming a run its owner stopped is worse than leaving a lost run to re-execute.
        return JobLoss(False, f"{state.describe()}: ended without a reason, and the batch system does "
                              "not say who ended it (its owner's qdel means stop); re-execute the "
                              "run to resume it")
    # No failure word at all (the job is gone, or it was signalled while still RUNNING): it
    # ended without its coordinator reporting, which only something from outside does.
    failure = failure or FailureClass.KILLED
    rule = RETRY_RULES[failure]
    return JobLoss(rule.retry, f"{state.describe()}: {failure.value}")


def arm_retry(instance: DagsterInstance, run: DagsterRun, state: JobState) -> JobLoss | None:
    """If the batch system lost the run's coordinator, let Dagster's daemon retry the run.

    Call before the run's failure is recorded: Dagster decides (``dagster/will_retry``) when it
    stores the failure, from the ``dagster/max_retries`` the run has then. Writes an engine
    event saying what was decided.

    Returns
    -------
    JobLoss or None
        None when the run has no retry budget (run retries off, or a budget of 0).
    """
    budget = run.tags.get(BUDGET_TAG)
    if not budget or budget == "0":
        return None
    loss = job_loss(state)
    if loss.retry:
        instance.add_run_tags(run.run_id, {MAX_RETRIES_TAG: budget})
        message = (f"The batch system lost the run's coordinator ({loss.why}): Dagster's run retries "
                   f"will re-execute the run as a new batch job (at most {budget} retries in all).")
    else:
        hint = (" Raise run_launcher.config.memory or the run tag hpc_workflows/memory."
                if FailureClass.OUT_OF_MEMORY.value in loss.why else "")
        message = f"The run's coordinator job ended ({loss.why}): not retried automatically.{hint}"
    instance.report_engine_event(message, run)
    return loss
