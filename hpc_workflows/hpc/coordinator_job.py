"""Main process of a coordinator batch job: runs ``dagster api execute_run``, reports why it stopped.

The batch system stops a job with SIGTERM to all its processes (``scancel``/``qdel``, walltime,
preemption), then SIGKILL after its KillWait. ``dagster api execute_run`` turns SIGTERM into an
interrupt itself (steps and worker jobs cancelled, the run marked canceled, or failed as
"interrupted unexpectedly"), but it cannot say *why*: that is the batch system's word (job
cancelled, time limit, preemption). This parent process waits beside it and, on SIGTERM, writes
the scheduler's state and reason to the run's event log while the run tears itself down. A
separate process because Dagster replaces the SIGTERM handler of the process it runs in.

Usage (written into the job script by :mod:`hpc_workflows.hpc.launcher`)::

    python -m hpc_workflows.hpc.coordinator_job SCHEDULER RUN_ID COMMAND...
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

from .run_retries import WILL_RETRY_TAG, JobLoss, arm_retry
from .scheduler_cli import scheduler_for

if TYPE_CHECKING:
    from dagster import DagsterInstance

_JOB_ID_ENV = {"slurm": "SLURM_JOB_ID", "pbs": "PBS_JOBID"}


def report_stop(kind: str, run_id: str, instance: DagsterInstance | None = None) -> JobLoss | None:
    """Write the batch system's word on why this job is being stopped to the run's events.

    Unless the run is being terminated from Dagster, a run that has a retry budget is armed for
    Dagster's automatic retry when the batch system is taking the job away (walltime,
    preemption, an administrator's cancel): see :mod:`hpc_workflows.hpc.run_retries`.

    Returns
    -------
    JobLoss or None
        What :func:`~hpc_workflows.hpc.run_retries.arm_retry` decided, None if nothing.
    """
    from dagster import DagsterInstance, DagsterRunStatus

    job_id = os.environ.get(_JOB_ID_ENV[kind], "")
    state = scheduler_for(kind).state(job_id) if job_id else None
    why = state.describe() if state else "job id unknown"
    with contextlib.ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(DagsterInstance.get())
        run = instance.get_run_by_id(run_id)
        if run is None:
            return None
        loss = None
        if state is not None and run.status != DagsterRunStatus.CANCELING:
            # First: the run records its failure once its teardown ends, and Dagster decides
            # on a retry from the run's tags at that moment.
            loss = arm_retry(instance, run, state)
        instance.report_engine_event(
            f"The batch system is stopping the run's coordinator job ({why}): SIGTERM received, "
            "the run cancels its steps and worker jobs.",
            run,
        )
        return loss


def confirm_retry(instance: DagsterInstance, run_id: str) -> bool:
    """Mark the run for retry if its failure was recorded before :func:`report_stop` armed it.

    The run's teardown can be quicker than the arming (a local cluster closes in a fraction of a
    second); Dagster then stored ``dagster/will_retry: false``. Its retry daemon reads that tag
    when it next looks at new failures (every 5 s), so setting it now, as the job ends, is
    usually in time; the event says what to do if it was not.

    Returns
    -------
    bool
        True if the tag was corrected.
    """
    from dagster import DagsterRunStatus
    from dagster._core.events import RunFailureReason
    from dagster._core.execution.retries import auto_reexecution_should_retry_run

    run = instance.get_run_by_id(run_id)
    if run is None or run.status != DagsterRunStatus.FAILURE or run.tags.get(WILL_RETRY_TAG) != "false":
        return False
    reason = run.tags.get("dagster/failure_reason")  # dagster._core.storage.tags.RUN_FAILURE_REASON_TAG
    if not auto_reexecution_should_retry_run(instance, run, RunFailureReason(reason) if reason else None):
        return False
    instance.add_run_tags(run_id, {WILL_RETRY_TAG: "true"})
    instance.report_engine_event(
        "The run's failure was recorded before its retry was armed: marked for retry now. If no "
        "retry run follows within a minute, re-execute the run (all steps) from the UI.", run)
    return True


def report_unfinished(run_id: str, returncode: int) -> None:
    """Fail the run if the coordinator ended without finishing it (it never could start, say)."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            instance.report_run_failed(
                run, f"The coordinator process exited with code {returncode} without finishing the run "
                "(see the job's .err log in the launcher's log_directory)."
            )


def main(argv: list[str] | None = None) -> int:
    """Run ``COMMAND`` as a child; on SIGTERM report the scheduler's reason; return its exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print("usage: python -m hpc_workflows.hpc.coordinator_job {slurm|pbs} RUN_ID COMMAND...", file=sys.stderr)
        return 2
    kind, run_id, command = args[0], args[1], args[2:]
    stopping = threading.Event()
    # The child gets the batch system's SIGTERM directly (it goes to every process of the job).
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        print(f"cannot start {command[0]!r}: {exc}", file=sys.stderr)
        report_unfinished(run_id, 127)
        return 127
    # Import and open the instance now, while the child starts: on a loaded node importing
    # Dagster takes seconds, KillWait leaves only seconds between SIGTERM and SIGKILL, and the
    # retry must be armed before the run records its failure (see report_stop).
    from dagster import DagsterInstance

    with contextlib.ExitStack() as stack:
        try:
            instance = stack.enter_context(DagsterInstance.get())
        except Exception as exc:  # noqa: BLE001 - report_stop opens its own then
            print(f"could not open the Dagster instance: {exc}", file=sys.stderr)
            instance = None
        loss = None
        while child.poll() is None:
            if stopping.wait(0.5):
                try:
                    loss = report_stop(kind, run_id, instance)
                except Exception as exc:  # noqa: BLE001 - the run's own teardown matters more
                    print(f"could not report the stop to the run's events: {exc}", file=sys.stderr)
                break
        returncode = child.wait()
        if returncode != 0:
            report_unfinished(run_id, returncode)
        if loss is not None and loss.retry and instance is not None:
            try:
                confirm_retry(instance, run_id)
            except Exception as exc:  # noqa: BLE001
                print(f"could not confirm the run's retry: {exc}", file=sys.stderr)
    return returncode


if __name__ == "__main__":
    sys.exit(main())
