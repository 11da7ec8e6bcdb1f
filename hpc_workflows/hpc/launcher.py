"""A Dagster run launcher that runs each run's coordinator as a SLURM or PBS batch job.

Without it, a run launched from the UI, a schedule, a sensor or a backfill runs its coordinator
(the process running the executor, which submits the worker jobs) inside the web server's or
daemon's process tree on the login node, where sites kill long processes. Set in ``dagster.yaml``::

    run_launcher:
      module: hpc_workflows.hpc.launcher
      class: BatchRunLauncher
      config: {scheduler: slurm, queue: normal, walltime: "12:00:00", memory: 4GiB}

Per run, tags override the job's resources: ``hpc_workflows/queue``, ``hpc_workflows/account``,
``hpc_workflows/walltime``, ``hpc_workflows/memory``, ``hpc_workflows/cores``. The job id is
recorded as the run tag ``hpc_workflows/batch_job_id``; run monitoring asks the batch system
about that job, and terminate cancels it. The job script holds no instance config (it may hold
database credentials): the job reads ``$DAGSTER_HOME/dagster.yaml`` like any Dagster process.
With ``run_retries`` enabled there, Dagster's daemon retries a run only when the batch system
lost its coordinator job (:mod:`hpc_workflows.hpc.run_retries`).
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import Array, Field, IntSource, Noneable, StringSource
from dagster import _check as check
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._core.origin import get_python_environment_entry_point
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from pydantic import ValidationError

from .run_retries import BUDGET_TAG, MAX_RETRIES_TAG, RetrySettingError, arm_retry, launch_tags
from .scheduler_cli import BatchJobError, BatchScheduler, CoordinatorJobSpec, scheduler_for

__all__ = ["BatchRunLauncher", "JOB_ID_TAG", "SCHEDULER_TAG", "TAG_PREFIX"]

TAG_PREFIX = "hpc_workflows/"
JOB_ID_TAG = TAG_PREFIX + "batch_job_id"
SCHEDULER_TAG = TAG_PREFIX + "scheduler"
#: Fields of :class:`CoordinatorJobSpec` a run may override with a tag ``hpc_workflows/<field>``.
OVERRIDABLE = ("queue", "account", "walltime", "memory", "cores")
#: Seconds terminate watches a cancelled job for its end (SIGTERM, KillWait, SIGKILL, cleanup).
CANCEL_WATCH_SECONDS = 300.0


class LaunchConfigError(ValueError):
    """The launcher's config or a run's override tags are invalid."""


def job_spec(config: Mapping[str, Any], tags: Mapping[str, str]) -> CoordinatorJobSpec:
    """The coordinator job's resources: instance config, then the run's override tags.

    Raises
    ------
    LaunchConfigError
        Naming the tag or ``run_launcher.config`` field and what to write instead.
    """
    overrides = {name: tags[TAG_PREFIX + name] for name in OVERRIDABLE if TAG_PREFIX + name in tags}
    merged = {k: v for k, v in config.items() if k != "scheduler" and v is not None} | overrides
    try:
        return CoordinatorJobSpec.model_validate(merged)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            where = f"run tag {TAG_PREFIX}{name}" if name in overrides else f"run_launcher.config.{name}"
            lines.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise LaunchConfigError("cannot submit the run's coordinator job:\n  " + "\n  ".join(lines)) from None


class BatchRunLauncher(RunLauncher, ConfigurableClass):
    """Submits each run's coordinator (``dagster api execute_run``) as a batch job."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, **config: Any) -> None:
        self._inst_data = inst_data
        self._config = config
        self._scheduler: BatchScheduler = scheduler_for(config.get("scheduler", "slurm"))
        job_spec(config, {})  # a bad instance config fails when the instance loads, not per run
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        optional_str = lambda what: Field(Noneable(StringSource), is_required=False, description=what)  # noqa: E731
        return {
            "scheduler": Field(StringSource, is_required=True, description="slurm or pbs"),
            "queue": optional_str("Partition (SLURM) or queue (PBS)."),
            "account": optional_str("Project/account to charge."),
            "walltime": optional_str("Coordinator walltime, e.g. '12:00:00' (default 12 h)."),
            "memory": optional_str("Coordinator memory, e.g. '4GiB' (default)."),
            "cores": Field(IntSource, is_required=False, description="Coordinator cores (default 1)."),
            "log_directory": optional_str("Job scripts and logs (default $DAGSTER_HOME/run_jobs)."),
            "job_script_prologue": Field(Array(str), is_required=False,
                                         description="Shell lines before the run (module load...)."),
            "job_extra_directives": Field(Array(str), is_required=False,
                                          description="Extra #SBATCH/#PBS directives."),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    # -- launching ---------------------------------------------------------------------------

    def _log_directory(self, spec: CoordinatorJobSpec) -> Path:
        root = Path(spec.log_directory) if spec.log_directory else Path(self._instance.root_directory) / "run_jobs"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)  # logs may show paths and data names
        return root

    def launch_run(self, context: LaunchRunContext) -> None:
        try:
            self._submit(context.dagster_run)
        except LaunchConfigError:
            if self._instance.run_retries_enabled:
                # The run fails with this error: a config error comes back on every retry.
                self._instance.add_run_tags(context.dagster_run.run_id, {MAX_RETRIES_TAG: "0"})
            raise

    def _submit(self, run: DagsterRun) -> None:
        """Write the run's job script and submit it; tag the run with the job id."""
        origin = run.job_code_origin
        if origin is None:
            raise LaunchConfigError(f"run {run.run_id} has no code origin: launch it from a code location")
        spec = job_spec(self._config, run.tags)
        instance = self._instance
        try:
            retry_tags = launch_tags(run.tags, instance.run_retries_enabled, instance.run_retries_max_retries)
        except RetrySettingError as exc:
            raise LaunchConfigError(f"cannot submit the run's coordinator job:\n  {exc}") from None
        if retry_tags:
            # Before submitting: a retried run inherits its parent's tags, armed ones included,
            # and a failure of this launch must not count as a lost coordinator.
            instance.add_run_tags(run.run_id, retry_tags)
        elif MAX_RETRIES_TAG in run.tags:
            instance.report_engine_event(
                f"Run tag {MAX_RETRIES_TAG} has no effect: run_retries.enabled is not true in "
                "dagster.yaml.", run, cls=self.__class__)
        args = ExecuteRunArgs(job_origin=origin, run_id=run.run_id, instance_ref=None,
                              set_exit_code_on_failure=True)
        # The job reads the instance from DAGSTER_HOME (instance_ref=None): the script carries
        # the run id and the code's location, never the instance config and its credentials.
        command = args.get_command_args()
        if origin.repository_origin.entry_point:
            # A bare "dagster" needs the environment's bin folder on the compute node's PATH,
            # which an un-activated environment lacks: run the code location's interpreter.
            skip = len(origin.repository_origin.entry_point)
            command = [*get_python_environment_entry_point(origin.executable_path), *command[skip:]]
        command = [origin.executable_path, "-m", "hpc_workflows.hpc.coordinator_job",
                   self._scheduler.kind, run.run_id, *command]
        workdir = getattr(origin.repository_origin.code_pointer, "working_directory", None) or os.getcwd()
        home = self._instance.root_directory
        spec = spec.model_copy(update={"job_script_prologue": [
            f"export DAGSTER_HOME={shlex.quote(home)}", *spec.job_script_prologue]})
        log_dir = self._log_directory(spec)
        job_name = f"dagster-run-{run.run_id[:8]}"
        script = log_dir / f"{job_name}.sh"
        part = script.with_suffix(".sh.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self._scheduler.script(spec, job_name, command, workdir))
        part.replace(script)
        log_base = log_dir / job_name
        try:
            job_id = self._scheduler.submit(script, log_base)
        except BatchJobError as exc:
            raise LaunchConfigError(str(exc)) from None
        self._instance.add_run_tags(run.run_id, {JOB_ID_TAG: job_id, SCHEDULER_TAG: self._scheduler.kind})
        self._instance.report_engine_event(
            f"Submitted the run's coordinator as {self._scheduler.kind} job {job_id} "
            f"(queue {spec.queue or 'default'}, walltime {spec.walltime}, memory {spec.memory}, "
            f"cores {spec.cores}); script and logs in {log_dir}"
            + (f"; if the batch system loses it, Dagster's run retries re-execute the run (at most "
               f"{retry_tags[BUDGET_TAG]} retries)" if retry_tags.get(BUDGET_TAG, "0") != "0" else ""),
            run,
            cls=self.__class__,
        )

    # -- terminating -------------------------------------------------------------------------

    def terminate(self, run_id: str) -> bool:
        check.str_param(run_id, "run_id")
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        job_id = run.tags.get(JOB_ID_TAG)
        if not job_id:
            self._instance.report_engine_event(
                "Cannot terminate: the run has no batch job id tag.", run, cls=self.__class__
            )
            return False
        before = self._scheduler.state(job_id)
        if before.ended:
            # The job is gone but the run never said so: what the user asked for is true.
            self._instance.report_run_canceled(run, f"Terminated: the coordinator's {before.describe()} had ended.")
            return True
        self._instance.report_run_canceling(run)
        self._scheduler.cancel(job_id)
        if before.waiting:
            # Nothing of the run ever ran: nobody else will report the cancellation.
            self._instance.report_run_canceled(run, f"Batch job {job_id} cancelled before it started.")
        else:
            # The coordinator gets SIGTERM, cancels its steps and worker jobs, reports CANCELED,
            # unless SIGKILL (KillWait later) comes first: then the watcher reports it.
            self._instance.report_engine_event(
                f"Cancelled the coordinator's batch job {job_id}.", run, cls=self.__class__
            )
            threading.Thread(target=self._report_cancel_when_gone, args=(run_id, job_id),
                             name=f"cancel-{job_id}").start()
        return True

    def _report_cancel_when_gone(self, run_id: str, job_id: str, timeout: float = CANCEL_WATCH_SECONDS) -> None:
        """Mark the run CANCELED once its job has ended, if the coordinator could not say so."""
        scheduler = self._scheduler
        deadline = time.monotonic() + timeout
        state = scheduler.state(job_id)
        while not state.ended and time.monotonic() < deadline:
            time.sleep(2.0)
            state = scheduler.state(job_id)
        run = self._instance.get_run_by_id(run_id)
        if state.ended and run is not None and run.status == DagsterRunStatus.CANCELING:
            self._instance.report_run_canceled(
                run, f"The coordinator's {state.describe()} ended before the run reported its cancellation."
            )

    # -- run monitoring ----------------------------------------------------------------------

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        job_id = run.tags.get(JOB_ID_TAG)
        if not job_id:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, "the run has no batch job id tag")
        state = self._scheduler_of(run).state(job_id)
        if state.ended is None:
            # The batch system did not answer (slurmctld busy or restarting): not a verdict.
            return CheckRunHealthResult(WorkerStatus.RUNNING, state.describe(), transient=True,
                                        run_worker_id=job_id)
        if state.ended:
            # The run is still STARTED (the daemon rechecks before failing it) yet its job is
            # gone: walltime, cancel, node failure or an OOM kill ended it before it reported.
            # The daemon records the failure right after this returns: arm the retry first.
            try:
                arm_retry(self._instance, run, state)
            except Exception as exc:  # noqa: BLE001 - failing the run matters more than its retry
                self._instance.report_engine_event(f"Could not arm the run's retry: {exc}", run,
                                                   cls=self.__class__)
            return CheckRunHealthResult(WorkerStatus.FAILED, state.describe(), run_worker_id=job_id)
        return CheckRunHealthResult(WorkerStatus.RUNNING, state.describe(), run_worker_id=job_id)

    def get_run_worker_debug_info(self, run: DagsterRun, include_container_logs: bool | None = True) -> str | None:
        job_id = run.tags.get(JOB_ID_TAG)
        return self._scheduler_of(run).state(job_id).describe() if job_id else None

    def _scheduler_of(self, run: DagsterRun) -> BatchScheduler:
        """The scheduler the run was submitted to (the instance config may have changed since)."""
        kind = run.tags.get(SCHEDULER_TAG, self._scheduler.kind)
        return self._scheduler if kind == self._scheduler.kind else scheduler_for(kind)

