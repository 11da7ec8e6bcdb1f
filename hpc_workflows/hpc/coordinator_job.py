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

import os
import signal
import subprocess
import sys
import threading

from .run_retries import arm_retry
from .scheduler_cli import scheduler_for

_JOB_ID_ENV = {"slurm": "SLURM_JOB_ID", "pbs": "PBS_JOBID"}


def report_stop(kind: str, run_id: str) -> None:
    """Write the batch system's word on why this job is being stopped to the run's events.

    Unless the run is being terminated from Dagster, a run that has a retry budget is armed for
    Dagster's automatic retry when the batch system is taking the job away (walltime,
    preemption, an administrator's cancel): see :mod:`hpc_workflows.hpc.run_retries`.
    """
    from dagster import DagsterInstance, DagsterRunStatus

    job_id = os.environ.get(_JOB_ID_ENV[kind], "")
    state = scheduler_for(kind).state(job_id) if job_id else None
    why = state.describe() if state else "job id unknown"
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is not None:
            if state is not None and run.status != DagsterRunStatus.CANCELING:
                # First: the run records its failure once its teardown ends, and Dagster decides
                # on a retry from the run's tags at that moment.
                arm_retry(instance, run, state)
            instance.report_engine_event(
                f"The batch system is stopping the run's coordinator job ({why}): SIGTERM received, "
                "the run cancels its steps and worker jobs.",
                run,
            )


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
    # Import now, while the child starts: on a loaded node importing Dagster takes seconds, and
    # KillWait leaves only seconds between SIGTERM and SIGKILL.
    import dagster  # noqa: F401

    while child.poll() is None:
        if stopping.wait(0.5):
            try:
                report_stop(kind, run_id)
            except Exception as exc:  # noqa: BLE001 - the run's own teardown matters more
                print(f"could not report the stop to the run's events: {exc}", file=sys.stderr)
            break
    returncode = child.wait()
    if returncode != 0:
        report_unfinished(run_id, returncode)
    return returncode


if __name__ == "__main__":
    sys.exit(main())
