"""A worker starts only the steps it can finish before its walltime.

Each batch worker offers a Dask resource, :data:`TIME_LEFT`: the seconds until it stops taking
new steps (its drain time, see :mod:`.retirement`, which keeps it up to date). A step whose
duration is known asks for that many seconds of it, so Dask's own resource check, on the
worker, at the moment a step would start, refuses to start it on a worker with less time left;
the worker then drains (it retires at once when the steps queued on it cannot fit) and the
cluster's adaptive loop submits a fresh job whose worker runs them.

A step's expected duration, first found of:

1. the op tag :data:`EXPECTED_DURATION_TAG` (seconds, or ``"HH:MM:SS"``), taken as given;
2. the longest duration of the same op's steps so far in this run;
3. the longest duration of the op's steps in the last :data:`HISTORY_RUNS` successful runs of
   the same job on this Dagster instance.

Durations from history are multiplied by :data:`HISTORY_MARGIN` (runs vary: file sizes, node
load). A step with no estimate runs anywhere, as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .settings import BatchClusterSettings, ExecutorSettings
from .walltime import parse_walltime

log = logging.getLogger(__name__)

#: Dask resource of batch workers: seconds left before the worker stops taking new steps.
TIME_LEFT = "hpcw_seconds_left"

#: Op tag: how long the op's steps take, in seconds ("600") or as "HH:MM:SS".
EXPECTED_DURATION_TAG = "hpc_workflows/expected_duration"

#: Earlier successful runs of the job read for step durations.
HISTORY_RUNS = 5

#: Factor on durations taken from history (this run or earlier ones), for their spread.
HISTORY_MARGIN = 1.25

#: Seconds a worker may take from its job's start to take its first step (Python start-up,
#: imports, connecting; 5-15 s on the testbed): a step must fit in what is left after that.
STARTUP_ALLOWANCE = 30


def _op_of(step_key: str) -> str:
    """The op name of a step key (``work[k3]`` -> ``work``)."""
    return re.sub(r"\[.*\]$", "", step_key)


def parse_expected_duration(text: str) -> float:
    """Seconds in an :data:`EXPECTED_DURATION_TAG` value.

    A bare number is seconds (not SLURM's minutes: a step duration, not a walltime).

    Raises
    ------
    ValueError
        Naming the tag and the accepted forms.
    """
    text = str(text).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = float(parse_walltime(text))
        except ValueError:
            seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"op tag {EXPECTED_DURATION_TAG!r} must be seconds ('600') or "
                         f"'HH:MM:SS' ('00:10:00'), not {text!r}")
    return seconds


class StepBudget:
    """Expected step durations of one run, and the :data:`TIME_LEFT` each step asks for.

    Parameters
    ----------
    instance : DagsterInstance
        Where earlier runs of the job are recorded (read once, on first need).
    job_name : str
        The run's job.
    run_id : str
        The run itself (excluded from "earlier runs").
    """

    def __init__(self, instance: Any, job_name: str, run_id: str):
        self.instance, self.job_name, self.run_id = instance, job_name, run_id
        self._this_run: dict[str, float] = {}
        self._history: dict[str, float] | None = None

    def record(self, events: Iterable[Any]) -> None:
        """Note the durations of the steps that succeeded among ``events`` (this run's)."""
        for event in events:
            if getattr(event, "event_type_value", None) != "STEP_SUCCESS" or event.step_key is None:
                continue
            seconds = event.event_specific_data.duration_ms / 1000.0
            op = _op_of(event.step_key)
            self._this_run[op] = max(seconds, self._this_run.get(op, 0.0))

    def _earlier_runs(self) -> dict[str, float]:
        if self._history is None:
            from dagster import DagsterRunStatus, RunsFilter

            self._history = {}
            try:
                runs = self.instance.get_runs(
                    filters=RunsFilter(job_name=self.job_name, statuses=[DagsterRunStatus.SUCCESS]),
                    limit=HISTORY_RUNS + 1)
                for run in runs:
                    if run.run_id == self.run_id:
                        continue
                    for stat in self.instance.get_run_step_stats(run.run_id):
                        if stat.start_time is None or stat.end_time is None:
                            continue
                        op = _op_of(stat.step_key)
                        took = stat.end_time - stat.start_time
                        self._history[op] = max(took, self._history.get(op, 0.0))
            except Exception as exc:  # noqa: BLE001 - no history is no estimate, not a failure
                log.warning("could not read earlier runs' step durations: %s", exc)
        return self._history

    def expected(self, step_key: str, tags: Mapping[str, str]) -> tuple[float, str] | None:
        """(seconds, where the estimate comes from) for a step, or ``None`` when unknown."""
        if EXPECTED_DURATION_TAG in tags:
            return parse_expected_duration(tags[EXPECTED_DURATION_TAG]), f"op tag {EXPECTED_DURATION_TAG}"
        op = _op_of(step_key)
        if op in self._this_run:
            return self._this_run[op] * HISTORY_MARGIN, f"{op} steps earlier in this run x {HISTORY_MARGIN:g}"
        earlier = self._earlier_runs().get(op)
        if earlier is not None:
            return earlier * HISTORY_MARGIN, f"{op} steps of earlier runs x {HISTORY_MARGIN:g}"
        return None

    def resources_for(self, step_key: str, tags: Mapping[str, str],
                      settings: ExecutorSettings) -> dict[str, float]:
        """The :data:`TIME_LEFT` a step asks of the workers of a cluster (``{}``: none).

        Raises
        ------
        ValueError
            When the step could never fit in a worker's lifetime (the message says how long it
            is expected to take, where that comes from, and what to change), or the tag is bad.
        """
        batch = settings.cluster.settings
        if not isinstance(batch, BatchClusterSettings):
            return {}  # local and existing workers have no walltime
        found = self.expected(step_key, tags)
        if found is None:
            return {}
        seconds, source = found
        life = batch.lifetime()
        usable = life.lifetime - life.stagger - STARTUP_ALLOWANCE
        if seconds > usable and not source.startswith("op tag"):
            # History is an estimate with a margin: ask for a fresh worker rather than fail.
            log.info("step %s: %.0f s expected (%s), more than a worker's %d s; asking for %d s",
                     step_key, seconds, source, usable, usable)
            seconds = float(usable)
        if seconds > usable:
            raise ValueError(
                f"expected to take {seconds:.0f} s ({source}), but a worker of this "
                f"{settings.cluster.kind} cluster takes new steps for at most about {usable} s of "
                f"its walltime {batch.walltime} (lifetime_margin, stagger and start-up "
                f"deducted), so it could never start. Raise the cluster's walltime, or make "
                "the op's steps shorter."
            )
        return {TIME_LEFT: seconds}


def duration_tag_problems(steps: Iterable[Any], settings_of: Callable[[Any], ExecutorSettings]) -> list[str]:
    """Steps whose :data:`EXPECTED_DURATION_TAG` is bad or longer than their workers can run.

    Checked when the run starts, before any batch job is queued; ``settings_of(step)`` gives the
    settings of the cluster (worker pool) the step would run on.
    """
    budget = StepBudget(None, "", "")  # tags only: no history is read
    problems = []
    for step in steps:
        if EXPECTED_DURATION_TAG not in step.tags:
            continue
        try:
            budget.resources_for(step.key, step.tags, settings_of(step))
        except ValueError as exc:
            problems.append(f'step "{step.key}": {exc}')
    return problems


def _short_idle_workers(dask_scheduler: Any) -> list[str]:
    """On the scheduler: idle workers with less TIME_LEFT than the least any waiting step needs."""
    needs = [ts.resource_restrictions[TIME_LEFT] for ts in dask_scheduler.unrunnable
             if TIME_LEFT in (ts.resource_restrictions or {})]
    if not needs:
        return []
    least = min(needs)
    return [ws.address for ws in dask_scheduler.workers.values()
            if not ws.processing and ws.resources.get(TIME_LEFT, least) < least]


def replace_short_workers(rc: Any) -> list[str]:
    """Retire the idle workers of a batch cluster that are too close to their walltime for any
    step waiting for time, so that the adaptive loop replaces them now, not at their drain time.

    A step that asks for more TIME_LEFT than every worker has waits on the scheduler, where no
    worker sees it (a step queued on a worker makes that worker drain itself, see
    :mod:`.retirement`). Returns the addresses retired.
    """
    if rc.kind not in ("slurm", "pbs") or rc.cluster is None:
        return []
    short = rc.client.run_on_scheduler(_short_idle_workers)
    if short:
        rc.client.retire_workers(workers=short, close_workers=True, remove=True)
    return short
