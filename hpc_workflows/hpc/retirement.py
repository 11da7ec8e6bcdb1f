"""Retire batch workers before their walltime without losing the step they run.

dask's own ``--lifetime`` retires a worker at a fixed time even while a task executes: the
scheduler removes the worker, the step is restarted elsewhere and counts as a worker death
(three of those fail the step with KilledWorker). Here a worker plugin instead, at the drain
time, sets the worker's step slot to 0 so the scheduler sends it no new step, waits for the
running step to finish (bounded by the walltime), then closes the worker; the job ends and the
cluster's adaptive loop submits a replacement.

Until then it keeps the worker's ``TIME_LEFT`` resource (:mod:`.step_budget`) at the seconds left
before the drain time, so that a step of known duration starts only where it can finish; a worker
whose next queued step cannot finish there drains at once instead of idling to its drain time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time

from distributed import WorkerPlugin
from distributed.core import Status

from .settings import STEP_SLOT
from .step_budget import TIME_LEFT

log = logging.getLogger(__name__)

#: Exported by the worker job script (see clusters.py) so drain times count from job start.
JOB_START_ENV = "HPCWF_JOB_START"

#: Seconds between updates of a worker's TIME_LEFT; the value offered is short by this much,
#: so that it is never more than the time really left.
TIME_LEFT_EVERY = 2.0


def _stuck_on_time(worker, left: float) -> float | None:
    """What the worker's next queued step needs of TIME_LEFT, if that is more than ``left`` and
    the worker runs nothing (so that step would wait here until the drain); else ``None``."""
    state = worker.state
    if state.executing_count or not state.constrained:
        return None
    need = (state.constrained.peek().resource_restrictions or {}).get(TIME_LEFT, 0.0)
    return need if need > left else None


class RetireBeforeWalltime(WorkerPlugin):
    """Drain then close a worker ``lifetime`` s (+/- ``stagger``) after its batch job started.

    Parameters
    ----------
    lifetime : float
        Seconds after job start at which the worker stops taking new steps.
    stagger : float
        Random spread so that workers started together do not all leave at once.
    hard_limit : float
        Seconds after job start by which the worker closes even if a step still runs (a few
        seconds before the batch system would kill it).
    """

    name = "hpc-workflows-retire-before-walltime"

    def __init__(self, lifetime: float, stagger: float, hard_limit: float):
        self.lifetime = lifetime
        self.stagger = stagger
        self.hard_limit = hard_limit

    async def setup(self, worker) -> None:
        started = float(os.environ.get(JOB_START_ENV) or time.time())
        drain_at = started + self.lifetime + random.uniform(-self.stagger, self.stagger)
        # Before setup returns: the worker handles no step before its plugins are set up, and
        # the TIME_LEFT it was started with is the most any worker of the cluster could have.
        if TIME_LEFT in worker.state.total_resources:
            await worker.set_resources(**{TIME_LEFT: self._time_left(drain_at)})
        self._task = asyncio.ensure_future(self._retire(worker, drain_at, started + self.hard_limit))

    @staticmethod
    def _time_left(drain_at: float) -> float:
        return max(0.0, drain_at - time.time() - TIME_LEFT_EVERY)

    def teardown(self, worker) -> None:
        # Teardown runs inside the close that _retire itself started: cancelling then would
        # abort that close and leave the job idling until the walltime kills it.
        task = getattr(self, "_task", None)
        if task is not None and not getattr(self, "_closing", False):
            task.cancel()

    async def _retire(self, worker, drain_at: float, hard_at: float) -> None:
        while time.time() < drain_at:
            await asyncio.sleep(min(TIME_LEFT_EVERY, max(0.0, drain_at - time.time())))
            if worker.status not in (Status.running, Status.paused):
                return  # retired or closing already (e.g. by step_budget.replace_short_workers)
            if TIME_LEFT not in worker.state.total_resources:
                continue
            left = self._time_left(drain_at)
            try:
                await worker.set_resources(**{TIME_LEFT: left})
            except Exception as exc:  # noqa: BLE001 - the scheduler briefly unreachable: the drain must still happen
                log.info("updating %s of %s failed: %s", TIME_LEFT, worker.address, exc)
            need = _stuck_on_time(worker, left)
            if need is not None:
                log.info("%s: its next step needs %.0f s, %.0f s left before walltime: draining "
                         "now so that a fresh worker runs it", worker.address, need, left)
                break
        log.info("walltime near: %s takes no new steps", worker.address)
        await worker.set_resources(**{STEP_SLOT: 0})
        # Wait for the running step, and for its result to be collected by the orchestrator:
        # with no other worker to move that result to, dask would abort the graceful retirement
        # and the close would count as a worker death for the steps queued here.
        while (worker.state.executing_count or len(worker.data)) and time.time() < hard_at:
            await asyncio.sleep(0.25)
        self._closing = True
        await worker.close_gracefully(reason="walltime-near")
