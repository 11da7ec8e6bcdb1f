"""``hpc_dask_executor``: Dagster steps on Dask workers that are batch jobs (SLURM, PBS) or local.

dagster-dask's model (each step a Dask task on a worker, per-op Dask resources from the
``dagster-dask/resource_requirements`` op tag, so ops written for dagster-dask run unchanged) on
dask-jobqueue's clusters, adding what runs on shared HPC systems need:

- typed, validated config (:mod:`.settings`); scaling always requested (``scale``/``adapt``);
- a clear run failure when no worker can start (submission rejected, nothing connects before
  ``worker_start_timeout``) and a clear step failure when a step asks for a Dask resource no
  worker has;
- Dagster's own orchestration loop (``ActiveExecution``): RetryPolicy honoured, downstream steps
  skipped after a failure, interrupts handled;
- run-unique Dask keys, so concurrent runs of one job on a shared scheduler do not collide;
- steps of ops tagged ``{"hpc_workflows/run_on": "coordinator"}`` (planning, summaries) run in
  the run's own process, and the cluster is opened only when a step that needs a worker is
  ready: a run whose plan finds nothing to do queues no batch job;
- worker pools: steps of ops tagged ``{"hpc_workflows/worker_pool": "<name>"}`` run on the
  cluster of ``worker_pools.<name>`` (e.g. a data-mover queue), others on ``cluster``
  (:mod:`.pools`);
- a step of known duration starts only on a worker that can finish it before its walltime
  (:mod:`.step_budget`);
- TLS with temporary credentials for batch clusters; the cluster closed and every worker job
  cancelled when the run ends, fails or is interrupted.

It does not import the ``dagster_dask`` package: its ``__init__`` imports ``dask.dataframe``
(pandas, pyarrow, dask.array) for a DataFrame type, 1.7 s in every process that loads the job
(each Dask worker, each ``dagster job execute``), and its ``DaskExecutor`` offers nothing
this executor uses (its ``execute`` and ``retries`` are the parts replaced here).

Example run config::

    execution:
      config:
        cluster: {slurm: {queue: normal, cores: 4, memory: 8GiB, walltime: "02:00:00"}}
        adapt: {minimum: 0, maximum: 10}
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import queue
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import click
from dagster import Field, Float, Int, Permissive, executor, multiple_process_executor_requirements
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.objects import ErrorSource, StepFailureData
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.base import Executor
from dagster._utils.error import serializable_error_info_from_exc_info

from .accounting_events import run_accounting_events
from .pools import RunPools, pool_of, unknown_pools, unknown_pools_message
from .refusal import refusal_message
from .step_budget import StepBudget, duration_tag_problems, replace_short_workers
from .settings import ExecutorSettings, validate_executor_settings
from .worker_step import run_step

if TYPE_CHECKING:
    # The cluster machinery (distributed, ~0.8 s to import) is imported where the first
    # cluster opens: a run whose plan finds nothing to do never needs it (issue 13).
    import distributed

    from .clusters import RunCluster
    from .worker_loss import WorkerLossReporter

_POLL = 0.05  # seconds the loop blocks on futures; bounds the latency added per step
_WORKER_CHECK = 1.0  # seconds between checks that some worker is (or can be) there


#: Op tag: ``{"hpc_workflows/run_on": "coordinator"}`` runs the op's steps in the run's own
#: process (planning, summaries: small files, no heavy work), not on a Dask worker.
COORDINATOR_TAG = "hpc_workflows/run_on"

#: dagster-dask's op tag for per-op Dask resources (JSON), e.g. ``{"GPU": 1}``.
DASK_RESOURCE_REQUIREMENTS_KEY = "dagster-dask/resource_requirements"


def dask_resource_requirements(tags: Mapping[str, str]) -> dict[str, float]:
    """The Dask resources an op asks for through dagster-dask's tag (``{}`` if none).

    Raises
    ------
    ValueError
        When the tag is not a JSON object of numbers.
    """
    raw = tags.get(DASK_RESOURCE_REQUIREMENTS_KEY)
    if raw is None:
        return {}
    try:
        wanted = json.loads(raw)
        if not isinstance(wanted, dict):
            raise TypeError
        return {str(k): float(v) for k, v in wanted.items()}
    except (TypeError, ValueError):
        raise ValueError(
            f"op tag {DASK_RESOURCE_REQUIREMENTS_KEY!r} must be a JSON object of numbers, "
            f'e.g. \'{{"GPU": 1}}\', not {raw!r}'
        ) from None


class ExecutorConfigError(click.ClickException):
    """Invalid ``execution.config``: the message names each field and the fix.

    A ``ClickException`` because ``dagster job execute`` is a click program: click prints
    ``Error: <message>`` and exits 1 instead of a 70-line traceback ending in the same lines.
    Anywhere else (the UI's run worker, ``execute_job``) it is an ordinary exception.
    """


#: Op tag holding an executor config (JSON) for runs whose own config names no cluster: a
#: dataset's ``execution:`` reaches its backfills this way, since runs launched from the asset
#: graph (backfills, schedules, sensors) carry no run config of their own.
STEP_EXECUTION_TAG = "hpc_workflows/execution"


def settings_from_step_tags(execution_plan: ExecutionPlan) -> ExecutorSettings | None:
    """The executor settings the plan's steps ask for through STEP_EXECUTION_TAG, if any.

    Raises
    ------
    ExecutorConfigError
        When steps of one run ask for different clusters, or the tag is not a valid config.
    """
    wanted = {step.tags[STEP_EXECUTION_TAG] for step in execution_plan.get_all_steps_in_topo_order()
              if STEP_EXECUTION_TAG in step.tags}
    if not wanted:
        return None
    if len(wanted) > 1:
        raise ExecutorConfigError(
            "the steps of this run name different clusters in their datasets' execution: sections; "
            "launch them in separate runs, or give the run an execution: config")
    try:
        return validate_executor_settings(json.loads(wanted.pop()))
    except ValueError as exc:
        raise ExecutorConfigError(str(exc)) from None


class NoWorkerError(RuntimeError):
    """No Dask worker connected, or none can: the run cannot make progress."""


class HpcDaskExecutor(Executor):
    """Steps on Dask workers, with scaling, retries, skips, isolation, TLS and clean teardown."""

    def __init__(self, settings: ExecutorSettings, retries: RetryMode, explicit: bool = True):
        self.settings = settings
        self._retries = retries
        # False when the run config named no cluster: then the steps may say (STEP_EXECUTION_TAG).
        self._explicit = explicit

    @property
    def retries(self) -> RetryMode:
        return self._retries

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        if not plan_context.instance.is_persistent:
            raise RuntimeError(
                "the HPC executor needs a persistent Dagster instance shared with the workers: "
                "set DAGSTER_HOME to a folder on a filesystem all nodes see (docs/production.md)"
            )
        if not self._explicit:
            self.settings = settings_from_step_tags(execution_plan) or self.settings
        for warning in self.settings.warnings():  # valid, but probably not what was meant
            plan_context.log.warning(warning)
        unknown = unknown_pools(self.settings, execution_plan.get_all_steps_in_topo_order())
        if unknown:  # before any batch job is queued
            raise ExecutorConfigError(unknown_pools_message(self.settings, unknown))
        too_long = duration_tag_problems(
            execution_plan.get_all_steps_in_topo_order(),
            lambda step: ExecutorSettings() if step.tags.get(COORDINATOR_TAG) == "coordinator"
            else RunPools(self.settings, "").settings_of(pool_of(step.tags)))
        if too_long:  # also before any batch job is queued
            raise ExecutorConfigError("\n".join(too_long))
        cluster = RunPools(self.settings, f"dagster-{plan_context.run_id[:8]}")
        try:
            yield from self._orchestrate(plan_context, execution_plan, cluster)
        finally:
            cluster.close()
        yield from run_accounting_events(plan_context, cluster)  # its jobs have ended: sacct is final

    def _orchestrate(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan,
        cluster: RunPools,
    ) -> Iterator[DagsterEvent]:
        run_id = plan_context.run_id
        recon_job = plan_context.reconstructable_job
        instance_ref = plan_context.instance.get_ref()
        attempts: dict[str, int] = {}
        running: dict[distributed.Future, str] = {}
        pool_of_future: dict[distributed.Future, str | None] = {}  # worker pool of each step
        waiting_since: dict[str | None, float | None] = {}  # per pool, see _check_workers
        next_worker_check = 0.0
        finished: queue.Queue[distributed.Future] = queue.Queue()  # filled by done-callbacks
        # Dask reruns a step whose worker is lost without a word: this says which job and why.
        losses: dict[str | None, WorkerLossReporter] = {}
        # Steps of ops tagged COORDINATOR_TAG run here, in threads; a cluster (and its batch
        # jobs) is opened only when a step that needs one of its workers is ready, so a run
        # whose plan finds nothing to do never queues a worker job (pools: .pools).
        local: dict[concurrent.futures.Future, str] = {}
        coordinator = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="hpcw-coordinator")
        # Steps of known duration start only on workers with that much time left (.step_budget).
        budget = StepBudget(plan_context.instance, plan_context.dagster_run.job_name, run_id)

        with ActiveExecution(execution_plan, retry_mode=self.retries) as active:
            try:
                while not active.is_complete or running or local:
                    if active.check_for_interrupts():
                        active.mark_interrupted()
                        yield DagsterEvent.engine_event(
                            plan_context,
                            "Interrupted: cancelling steps and worker jobs",
                            EngineEventData.interrupted(list(running.values())),
                        )
                        raise DagsterExecutionInterruptedError()

                    for step in active.get_steps_to_execute():
                        step_context = plan_context.for_step(step)
                        if step.tags.get(COORDINATOR_TAG) == "coordinator":
                            attempts[step.key] = attempts.get(step.key, 0) + 1
                            local_future = coordinator.submit(
                                run_step, recon_job, plan_context.dagster_run,
                                plan_context.run_config, step.key, instance_ref, self.retries,
                                active.get_known_state(), execution_plan.repository_load_data,
                            )
                            local[local_future] = step.key
                            local_future.add_done_callback(finished.put)
                            continue
                        pool = pool_of(step.tags)
                        rc = cluster.get(pool)
                        if rc is None:
                            pool_settings = cluster.settings_of(pool)
                            yield DagsterEvent.engine_event(
                                plan_context,
                                f"Starting {pool_settings.cluster.kind} Dask cluster "
                                f"{cluster.name_of(pool)} (workers min/max "
                                f"{pool_settings.workers_wanted()})",
                                EngineEventData(),
                            )
                            rc = cluster.open(pool)
                            from .worker_loss import WorkerLossReporter  # with the cluster: see imports

                            losses[pool] = WorkerLossReporter(rc.kind, rc.cluster, rc.ledger)
                        from .clusters import missing_resources  # loaded by cluster.open already

                        try:
                            wanted = {**rc.step_resources, **dask_resource_requirements(step.tags),
                                      **budget.resources_for(step.key, step.tags,
                                                             cluster.settings_of(pool))}
                            lacking = missing_resources(wanted, rc.worker_resources)
                            problem = _impossible_resources(step.key, lacking, rc) if lacking else None
                        except ValueError as exc:
                            problem = f'Step "{step.key}": {exc}'
                        if problem is not None:
                            event = _unrunnable_step_failure(step_context, problem)
                            yield event
                            active.handle_event(event)
                            active.verify_complete(plan_context, step.key)
                            continue
                        attempts[step.key] = attempts.get(step.key, 0) + 1
                        # Arguments bound in a partial: dask parses submit's own arguments for
                        # nested tasks and iterates tuples, which Dagster's @record types (e.g.
                        # the repository load data of asset jobs) refuse.
                        future = rc.client.submit(
                            functools.partial(
                                run_step,
                                recon_job,
                                plan_context.dagster_run,
                                plan_context.run_config,
                                step.key,
                                instance_ref,
                                self.retries,
                                active.get_known_state(),
                                execution_plan.repository_load_data,
                            ),
                            # Run-unique: the same job running twice on one scheduler must not
                            # share results (dagster-dask uses "job.step": dagster issue 21418).
                            key=f"{step.key}-{run_id}-{attempts[step.key]}",
                            resources=wanted,
                            pure=False,
                        )
                        running[future] = step.key
                        pool_of_future[future] = pool
                        future.add_done_callback(finished.put)
                    yield from active.concurrency_event_iterator(plan_context)
                    _report_losses(plan_context, active, losses, running)

                    if running or local:
                        done = _drain(finished, timeout=_POLL)
                        if done:
                            # A lost worker can end its step at once (KilledWorker once
                            # allowed-failures is used up): explain the loss while the step is
                            # still in `running`, before its failure is reported.
                            _report_losses(plan_context, active, losses, running)
                        for future in done:
                            step_key = running.pop(future, None) or local.pop(future, None)
                            if step_key is None:
                                continue
                            if future in pool_of_future:  # that pool has a worker
                                waiting_since[pool_of_future.pop(future)] = None
                            yield from self._finish(plan_context, active, future, step_key, budget)
                        if not done and running and time.monotonic() >= next_worker_check:
                            next_worker_check = time.monotonic() + _WORKER_CHECK
                            # Each pool with steps waiting: one pool's workers do not run
                            # another's steps, so each must be able to start its own.
                            for pool in set(pool_of_future.values()):
                                waiting_since[pool] = self._check_workers(
                                    cluster.opened[pool], waiting_since.get(pool),
                                    cluster.settings_of(pool).worker_start_timeout)
                                for address in replace_short_workers(cluster.opened[pool]):
                                    plan_context.log.info(
                                        f"worker {address} is too close to its walltime for the "
                                        "steps waiting: retired, a fresh worker job replaces it")
                    elif not active.is_complete:
                        active.sleep_til_ready()  # e.g. a retry's delay

                    yield from active.plan_events_iterator(plan_context)
            finally:
                for future in [*running, *local]:
                    future.cancel()
                coordinator.shutdown(wait=False)

    def _finish(
        self,
        plan_context: PlanOrchestrationContext,
        active: ActiveExecution,
        future: distributed.Future | concurrent.futures.Future,
        step_key: str,
        budget: StepBudget | None = None,
    ) -> Iterator[DagsterEvent]:
        try:
            events = future.result()
        except (Exception, asyncio.CancelledError):  # turned into a step failure / retry below
            # The step's code reports its own failures as events; this is the worker or the
            # framework failing (worker killed too often, unpicklable result, cancelled...).
            error = serializable_error_info_from_exc_info(sys.exc_info())
            step_context = plan_context.for_step(active.get_step_by_key(step_key))
            event = self.log_failure_or_retry_event_after_error(
                step_context, error, active.get_known_state()
            )
            yield event
            active.handle_event(event)
        else:
            if not isinstance(future, concurrent.futures.Future):  # a distributed.Future
                future.release()  # free the worker's copy now: a draining worker waits for it
            if budget is not None:
                budget.record(events)
            for event in events:
                yield event
                active.handle_event(event)
        active.verify_complete(plan_context, step_key)

    def _check_workers(
        self, rc: RunCluster, waiting_since: float | None, start_timeout: float
    ) -> float | None:
        """Fail fast when no worker can start; returns since when we have been waiting."""
        errors = rc.submission_errors()
        if errors:
            raise NoWorkerError(
                f"submitting a {rc.kind} worker job failed, so no step can run; the batch "
                "system said:\n"
                + refusal_message(rc.kind, errors[-1])
            )
        if rc.worker_count() > 0:
            return None
        now = time.monotonic()
        if waiting_since is None:
            return now
        if now - waiting_since > start_timeout:
            hint = {
                "slurm": "see `squeue -u $USER` (pending reason) and the worker logs in log_directory",
                "pbs": "see `qstat -u $USER` and the worker logs in log_directory",
            }.get(rc.kind, "check that workers can reach the scheduler")
            raise NoWorkerError(
                f"no Dask worker connected within worker_start_timeout="
                f"{start_timeout:g} s; {hint}. "
                "Raise worker_start_timeout if jobs just wait long in the queue."
            )
        return waiting_since


def _drain(finished: queue.Queue, timeout: float) -> list:
    """Futures finished so far: blocks up to ``timeout`` for the first, then takes the rest."""
    try:
        done = [finished.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            done.append(finished.get_nowait())
        except queue.Empty:
            return done


def _impossible_resources(step_key: str, lacking: dict[str, float], rc: RunCluster) -> str:
    offered = rc.worker_resources or {}
    return (
        f'Step "{step_key}" asks for Dask resources {lacking} but the workers of '
        f"this {rc.kind} cluster offer {offered}: it could never start. Add them under "
        "execution.config.cluster.<kind>.resources, or change the op's "
        f'"{DASK_RESOURCE_REQUIREMENTS_KEY}" tag.'
    )


def _report_losses(plan_context: PlanOrchestrationContext, active: ActiveExecution,
                   losses: Mapping[str | None, WorkerLossReporter], running: Mapping) -> None:
    """Warn, in each affected step's log, about workers lost while running it."""
    for reporter in losses.values():
        for step_key, message in reporter.poll(running):
            plan_context.for_step(active.get_step_by_key(step_key)).log.warning(message)


def _unrunnable_step_failure(step_context, message: str) -> DagsterEvent:
    """A step failure, without running the step, for a step that could never run."""
    try:
        raise NoWorkerError(message)
    except NoWorkerError:
        error = serializable_error_info_from_exc_info(sys.exc_info())
    return DagsterEvent.step_failure_event(
        step_context,
        StepFailureData(error=error, user_failure_data=None, error_source=ErrorSource.FRAMEWORK_ERROR),
        message=message,
    )


@executor(
    name="hpc_dask",
    requirements=multiple_process_executor_requirements(),
    config_schema={
        "cluster": Field(
            Permissive(),
            is_required=False,
            description="One of {local: {...}}, {slurm: {...}}, {pbs: {...}}, {existing: {address}}.",
        ),
        "scale": Field(Int, is_required=False, description="Fixed number of workers."),
        "adapt": Field(Permissive(), is_required=False, description="{minimum: n, maximum: m}"),
        "worker_start_timeout": Field(
            Float, is_required=False, description="Seconds to wait for a first worker."
        ),
        "worker_pools": Field(
            Permissive(), is_required=False,
            description="{name: {cluster: {...}, scale|adapt}}: ops tagged "
            "hpc_workflows/worker_pool: <name> run on that pool's workers.",
        ),
        "retries": get_retries_config(),
    },
)
def hpc_dask_executor(init_context) -> HpcDaskExecutor:
    """Dagster executor running each step on a Dask worker of a local, SLURM, PBS or existing
    cluster. See :mod:`hpc_workflows.hpc.executor` and docs/production.md for the config."""
    config = dict(init_context.executor_config)
    retries = RetryMode.from_config(config.pop("retries"))
    explicit = bool(config)
    try:
        settings = validate_executor_settings(config)
    except ValueError as exc:
        raise ExecutorConfigError(str(exc)) from None
    return HpcDaskExecutor(settings, retries, explicit=explicit)
