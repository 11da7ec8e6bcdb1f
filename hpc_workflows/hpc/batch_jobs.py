"""dask-jobqueue job classes that remember what they submitted and why a submission failed.

dask-jobqueue only logs a failed ``sbatch``/``qsub`` (a rejected queue leaves the cluster waiting
forever) and forgets job ids once a worker is gone. The executor needs both: to fail a run with
the batch system's own message, and to cancel every job it submitted whatever happens.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import shlex
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from .refusal import install_log_filter, mark_reported


def import_jobqueue() -> ModuleType:
    """Import dask_jobqueue without letting it take over Ctrl-C.

    dask_jobqueue.runner installs ``SIGINT -> sys.exit()`` at import time, which would replace
    Dagster's interrupt handling (and fails outright when imported outside the main thread,
    as on a Dask worker). Imported lazily, only where a batch cluster is built, with the
    previous handler put back.
    """
    if "dask_jobqueue" in sys.modules:
        return sys.modules["dask_jobqueue"]
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("build batch clusters from the main thread (dask_jobqueue sets signals)")
    previous = signal.getsignal(signal.SIGINT)
    try:
        return importlib.import_module("dask_jobqueue")
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class SubmissionLedger:
    """Job ids submitted by one cluster and the errors of failed submissions."""

    job_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: dask worker name of each job -> its job id: tells which job a lost worker was.
    job_of_worker: dict[str, str] = field(default_factory=dict)
    #: What the workers measured of themselves before the cluster closed (accounting.worker_usage).
    worker_reports: list[dict] = field(default_factory=list)
    #: BatchClusterSettings.memory_on_oom_retry: what jobs ask for after one was killed for memory.
    memory_on_oom_retry: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_job(self, job_id: str, worker_name: str | None = None) -> None:
        with self._lock:
            self.job_ids.append(job_id)
            if worker_name:
                self.job_of_worker[worker_name] = job_id

    def job_for_worker(self, worker_name: str) -> str | None:
        """The job id of a worker, by its dask name (``<job name>`` or ``<job name>-<process>``)."""
        with self._lock:
            if worker_name in self.job_of_worker:
                return self.job_of_worker[worker_name]
            prefixes = [n for n in self.job_of_worker if worker_name.startswith(n + "-")]
            return self.job_of_worker[max(prefixes, key=len)] if prefixes else None

    def add_error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)


#: Seconds a retired worker's job gets to end by itself before it is cancelled. Its worker has
#: closed by then (the scheduler waits for that); what may be left is the interpreter's exit
#: (seconds after Dagster steps, longer on a loaded node), which SIGTERM cuts short harmlessly.
RETIRE_GRACE = 3.0

#: Command printing a job's state, and the states in which a job will not end by itself soon
#: (not started: cancel at once). Anything else but "gone" means it is running: wait.
_STATE_COMMAND = {"slurm": ["squeue", "-h", "-o", "%T", "-j"], "pbs": ["qstat", "-f"]}
_NOT_STARTED = {"PENDING", "CONFIGURING", "Q", "H", "W", "T"}
_ENDED = {"", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "C", "F", "X"}


def _parse_state(kind: str, out: str) -> str:
    if kind == "pbs":
        match = re.search(r"job_state = (\S+)", out)
        return match.group(1) if match else ""
    return out.strip().split("\n")[0].strip() if out.strip() else ""


class _LedgerMixin:
    """Records job ids and submission errors in the class's ``ledger``; closes without a race."""

    ledger: SubmissionLedger
    batch_kind: str

    async def close(self) -> None:
        # dask-jobqueue cancels a job right after the scheduler asked its worker to retire.
        # The worker, its nanny and then the job end by themselves within seconds; SIGTERM in
        # the middle of that races their close and fills the worker log with tracebacks
        # (SSL handshake resets, "non-started TCPListener", "Nanny failed to start").
        # So: wait (bounded) for a running job to leave, then cancel whatever is left.
        job_id = getattr(self, "job_id", None)
        deadline = time.monotonic() + RETIRE_GRACE
        while job_id and time.monotonic() < deadline:
            try:
                out = await self._call([*_STATE_COMMAND[self.batch_kind], job_id])  # type: ignore[attr-defined]
            except RuntimeError:  # the batch system no longer knows the job: it ended
                break
            state = _parse_state(self.batch_kind, out)
            if state in _ENDED or state in _NOT_STARTED:
                break
            await asyncio.sleep(0.5)
        await super().close()  # type: ignore[misc]

    def _job_id_from_submit_output(self, out: str) -> str:
        job_id = super()._job_id_from_submit_output(out)  # type: ignore[misc]
        self.ledger.add_job(job_id, getattr(self, "name", None))
        return job_id

    async def start(self) -> None:
        try:
            await super().start()  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - recorded, then re-raised for dask's own handling
            self.ledger.add_error(str(exc))
            mark_reported(exc)  # the run reports it (refusal_message): no tornado traceback
            raise


def qsub_is_slurm_wrapper(qsub: str = "qsub") -> bool:
    """True when ``qsub`` is the Torque-compatible wrapper shipped with SLURM (not real PBS).

    The wrapper needs an output *file* pattern (``%j`` expanded by sbatch), real PBS Pro takes a
    directory: this decides which one we pass.
    """
    path = shutil.which(qsub)
    if not path:
        return False
    try:
        head = Path(path).read_bytes()[:20000]
    except OSError:
        return False
    return b"sbatch" in head or b"Slurm" in head


def tracked_cluster_class(kind: str, ledger: SubmissionLedger) -> type:
    """A SLURMCluster/PBSCluster subclass whose jobs report to ``ledger``.

    Parameters
    ----------
    kind : {"slurm", "pbs"}
    ledger : SubmissionLedger
        Shared by every job of the one cluster built from the returned class.
    """
    jq = import_jobqueue()
    install_log_filter()
    PBSJob = jq.PBSCluster.job_cls  # noqa: N806 - a class

    class LoggedPBSJob(PBSJob):
        """PBSJob whose worker logs land in ``log_directory``.

        ``qsub`` (the Torque wrappers at least) ignores ``#PBS -o/-e`` inside the script and writes
        logs to the submitter's working directory, so the paths go on the command line instead.
        """

        def __init__(self, *args, **kwargs):
            skip = list(kwargs.pop("job_directives_skip", None) or [])
            if kwargs.get("log_directory"):
                skip += ["#PBS -e", "#PBS -o"]
            super().__init__(*args, job_directives_skip=skip, **kwargs)

        async def _submit_job(self, script_filename: str) -> str:
            cmd = shlex.split(self.submit_command)
            if self.log_directory:
                log_dir = Path(self.log_directory)
                if qsub_is_slurm_wrapper(cmd[0]):
                    base = str(log_dir / f"{self.job_name or 'dask-worker'}")
                    cmd += ["-o", base + ".o%j", "-e", base + ".e%j"]
                else:  # real PBS: a directory gets the default <name>.o<id> file names
                    cmd += ["-o", f"{log_dir}/", "-e", f"{log_dir}/"]
            return await self._call(cmd + [script_filename])

    base_cluster, base_job = {
        "slurm": (jq.SLURMCluster, jq.SLURMCluster.job_cls),
        "pbs": (jq.PBSCluster, LoggedPBSJob),
    }[kind]
    job_cls = type(f"Tracked{base_job.__name__}", (_LedgerMixin, base_job),
                   {"ledger": ledger, "batch_kind": kind})
    return type(f"Tracked{base_cluster.__name__}", (base_cluster,), {"job_cls": job_cls})
