"""What a Dask worker runs for one Dagster step.

Dask computations inside the step (``ds.mean().compute()``) run on a local threaded scheduler
sized to the worker's own threads. Without this, dask would send them to the run's distributed
cluster; the step's task would wait on tasks queued behind other steps, and a worker could take
on a second step while the first one is still computing (oversubscription). Each worker process
holds one ``dagster_step`` slot, so one step at a time owns all its threads.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence

import dask
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.definitions.repository_definition import RepositoryLoadData
from dagster._core.events import DagsterEvent
from dagster._core.execution.api import create_execution_plan, execute_plan_iterator
from dagster._core.execution.plan.state import KnownExecutionState
from dagster._core.execution.retries import RetryMode
from dagster._core.instance import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRun
from dagster_shared.serdes import serialize_value

from .record_sizeof import register_record_sizeof
from .worker_exit_log import drop_false_death_reports

# Imported on every worker (it unpickles run_step from here) before a step's result is measured
# and before the worker closes.
register_record_sizeof()
drop_false_death_reports()

# Opening the instance (SQLite, config parsing) costs tens of ms: a worker keeps it for the
# steps that follow. Keyed by the serialised ref, since refs are not hashable.
_instances: dict[str, DagsterInstance] = {}
_instances_lock = threading.Lock()


def _instance(ref: InstanceRef) -> DagsterInstance:
    key = serialize_value(ref)
    with _instances_lock:
        if key not in _instances:
            _instances[key] = DagsterInstance.from_ref(ref)
        return _instances[key]


def step_threads() -> int:
    """Threads this worker process gives a step (1 outside a Dask worker)."""
    if "distributed" not in sys.modules:  # no worker here; importing it would cost ~0.8 s
        return 1
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except ValueError:  # not on a worker
        return 1


def run_step(
    recon_job: ReconstructableJob,
    dagster_run: DagsterRun,
    run_config: Mapping[str, object],
    step_key: str,
    instance_ref: InstanceRef,
    retry_mode: RetryMode,
    known_state: KnownExecutionState | None,
    repository_load_data: RepositoryLoadData | None,
) -> Sequence[DagsterEvent]:
    """Execute one step of a run on this worker; return its events for the orchestrator.

    The events are also written to the run's event log by the step itself (through the instance).
    """
    instance = _instance(instance_ref)
    plan = create_execution_plan(
        recon_job,
        run_config=run_config,
        step_keys_to_execute=[step_key],
        known_state=known_state,
        repository_load_data=repository_load_data,
    )
    with dask.config.set(scheduler="threads", num_workers=step_threads()):
        return list(
            execute_plan_iterator(
                plan,
                recon_job,
                dagster_run,
                instance=instance,
                run_config=run_config,
                retry_mode=retry_mode.for_inner_plan(),
            )
        )
