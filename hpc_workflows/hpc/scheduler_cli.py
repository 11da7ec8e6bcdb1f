"""Submit, query and cancel one batch job with SLURM's or PBS's own commands (no Dagster here).

dask-jobqueue builds job scripts for Dask *workers* only, and importing its scheduler modules
installs a SIGINT handler, which fails outside the main thread (where a web server or a daemon
launches runs). A coordinator job needs only a header, a prologue and one command, so each
scheduler here is a few lines over a shared base, in dask-jobqueue's style: directives,
submit/cancel commands and a parser of the job's state.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .batch_jobs import _NOT_STARTED as NOT_STARTED
from .batch_jobs import qsub_is_slurm_wrapper
from .walltime import parse_walltime

__all__ = ["BatchJobError", "CoordinatorJobSpec", "JobState", "BatchScheduler", "scheduler_for"]

SchedulerKind = Literal["slurm", "pbs"]

#: Seconds a scheduler command may take before we call the batch system unresponsive.
COMMAND_TIMEOUT = 30.0


class BatchJobError(RuntimeError):
    """A submit/cancel command failed; the message carries the batch system's own words."""


class CoordinatorJobSpec(BaseModel):
    """Resources of one coordinator job (the process that runs a Dagster run's executor)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str | None = Field(None, description="Partition (SLURM) or queue (PBS).")
    account: str | None = Field(None, description="Project/account to charge.")
    walltime: str = Field("12:00:00", description="Walltime of the coordinator job, e.g. '12:00:00'.")
    memory: str = Field("4GiB", description="Memory of the coordinator job, e.g. '4GiB'.")
    cores: int = Field(1, ge=1, description="Cores of the coordinator job (it is light: 1 is enough).")
    log_directory: str | None = Field(
        None, description="Where the job script and its stdout/stderr go (default: $DAGSTER_HOME/run_jobs)."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list, description="Shell lines before the run starts (module load, conda activate)."
    )
    job_extra_directives: list[str] = Field(
        default_factory=list, description="Extra #SBATCH/#PBS directives, e.g. ['--qos=normal']."
    )

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime(cls, value: object) -> str:
        text = str(value)
        parse_walltime(text)  # raises with the accepted forms
        return text

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: object) -> str:
        text = str(value)
        if text.strip().isdigit():
            raise ValueError(f"memory {text!r} has no unit: write e.g. '4GiB' or '{text}MB'")
        try:
            parse_bytes(text)
        except ValueError as exc:
            raise ValueError(f"memory {text!r} is not a size: write e.g. '4GiB' or '500MB'") from exc
        return text

    def memory_mib(self) -> int:
        """Memory in MiB, rounded up (both SLURM and PBS accept a MiB figure)."""
        return -(-parse_bytes(self.memory) // 2**20)


@dataclass(frozen=True)
class JobState:
    """What the batch system says about one job.

    ``state`` is the scheduler's word (``RUNNING``, ``TIMEOUT``, ``R``, ``C``...); ``ended`` is
    None when the batch system could not be asked (a transient failure, not an answer).
    ``exit_code`` is SLURM's ``rc:signal``; ``cancelled_by`` the uid that cancelled the job
    (SLURM's accounting says ``CANCELLED by 1234``), when known. ``says_who_cancelled`` is False
    for batch systems whose answer never says it (PBS's ``qstat -f``): there an end without
    a reason may be the owner's own ``qdel``.
    """

    job_id: str
    state: str
    ended: bool | None
    reason: str = ""
    exit_code: str = ""
    cancelled_by: int | None = None
    says_who_cancelled: bool = True

    @property
    def waiting(self) -> bool:
        """Queued or held: nothing of the job has run yet."""
        return self.state in NOT_STARTED

    def describe(self) -> str:
        """One line for an event log: job, state and the scheduler's reason."""
        extra = f" ({self.reason})" if self.reason else ""
        return f"batch job {self.job_id}: {self.state}{extra}"


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)


class BatchScheduler:
    """Shared base: render a script, submit it, ask a job's state, cancel it."""

    kind: ClassVar[SchedulerKind]
    directive: ClassVar[str]
    submit_command: ClassVar[list[str]]
    cancel_command: ClassVar[str]

    queue_flag: ClassVar[str]
    account_flag: ClassVar[str] = "-A"

    def resources(self, spec: CoordinatorJobSpec, job_name: str) -> list[str]:
        """Name, cores, memory and walltime directives (without the ``#SBATCH``/``#PBS`` prefix)."""
        raise NotImplementedError

    def header(self, spec: CoordinatorJobSpec, job_name: str) -> list[str]:
        """All directives of the job (without the ``#SBATCH``/``#PBS`` prefix)."""
        lines = self.resources(spec, job_name)
        if spec.queue:
            lines.append(f"{self.queue_flag} {spec.queue}")
        if spec.account:
            lines.append(f"{self.account_flag} {spec.account}")
        return lines

    def script(self, spec: CoordinatorJobSpec, job_name: str, command: list[str], workdir: str) -> str:
        """The whole job script: directives, prologue, then ``exec command`` in ``workdir``.

        ``exec`` makes the command the job's main process, so the batch system's SIGTERM
        (cancel, walltime) reaches it directly rather than a waiting shell.
        """
        lines = ["#!/usr/bin/env bash"]
        lines += [f"{self.directive} {d}" for d in self.header(spec, job_name)]
        lines += [f"{self.directive} {d}" for d in spec.job_extra_directives]
        lines += ["set -eu", "umask 077", f"cd {shlex.quote(workdir)}"]
        lines += list(spec.job_script_prologue)
        lines.append("exec " + shlex.join(command))
        return "\n".join(lines) + "\n"

    def submit_args(self, log_base: Path) -> list[str]:
        """Extra submit arguments (log paths the script's directives cannot set)."""
        return []

    def submit(self, script_path: Path, log_base: Path) -> str:
        """Submit ``script_path``; return the job id.

        Raises
        ------
        BatchJobError
            With the submit command's own error (unknown queue, account, walltime too long...).
        """
        cmd = [*self.submit_command, *self.submit_args(log_base), str(script_path)]
        try:
            out = _run(cmd)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BatchJobError(f"{shlex.join(cmd)} failed: {exc}") from exc
        if out.returncode != 0:
            raise BatchJobError(f"{shlex.join(cmd)} refused the job: {(out.stderr or out.stdout).strip()}")
        match = re.search(r"\d+(?:\.[\w.-]+)?", out.stdout)
        if not match:
            raise BatchJobError(f"{shlex.join(cmd)} printed no job id: {out.stdout.strip()!r}")
        return match.group(0)

    def cancel(self, job_id: str) -> None:
        """Cancel the job (the batch system sends SIGTERM, then SIGKILL)."""
        out = _run([self.cancel_command, job_id])
        if out.returncode != 0 and self.state(job_id).ended is False:
            raise BatchJobError(f"{self.cancel_command} {job_id} failed: {(out.stderr or out.stdout).strip()}")

    def state(self, job_id: str) -> JobState:
        """The job's state and the scheduler's reason; ``ended=None`` if it could not be asked."""
        raise NotImplementedError


def _sacct_state(job_id: str) -> str | None:
    """The job's state in SLURM's accounting (``CANCELLED by 0``...), or None without one."""
    try:
        out = _run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return lines[0] if out.returncode == 0 and lines else None


class SlurmScheduler(BatchScheduler):
    """SLURM: sbatch / scontrol show job / scancel (no accounting database needed)."""

    kind = "slurm"
    directive = "#SBATCH"
    submit_command = ["sbatch", "--parsable", "--export=ALL"]
    cancel_command = "scancel"
    _LIVE: ClassVar[set[str]] = {
        "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
        "STAGE_OUT", "SIGNALING", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "STOPPED",
    }

    queue_flag = "-p"

    def resources(self, spec: CoordinatorJobSpec, job_name: str) -> list[str]:
        return [f"-J {job_name}", "-n 1", f"--cpus-per-task={spec.cores}",
                f"--mem={spec.memory_mib()}M", f"-t {spec.walltime}"]

    def submit_args(self, log_base: Path) -> list[str]:
        return ["-o", f"{log_base}.%j.out", "-e", f"{log_base}.%j.err"]

    def state(self, job_id: str) -> JobState:
        try:
            out = _run(["scontrol", "show", "job", "-o", job_id])
        except (OSError, subprocess.TimeoutExpired) as exc:
            return JobState(job_id, "UNKNOWN", None, f"scontrol failed: {exc}")
        if out.returncode != 0:
            if "Invalid job id" in out.stderr:  # purged after MinJobAge: it ended long ago
                return JobState(job_id, "GONE", True, "the batch system no longer knows the job")
            return JobState(job_id, "UNKNOWN", None, out.stderr.strip())
        fields = dict(re.findall(r"(\w+)=(\S*)", out.stdout))
        state = fields.get("JobState", "UNKNOWN")
        reason = ", ".join(
            f"{k} {fields[k]}" for k in ("Reason", "ExitCode") if fields.get(k) not in (None, "", "None", "0:0")
        )
        cancelled_by = None
        if state in ("COMPLETING", "CANCELLED"):
            # scontrol says COMPLETING until the job's processes have exited, which is after the
            # coordinator reports why it is stopped; the accounting has the final state at once
            # and who cancelled (e.g. "CANCELLED by 0"), which scontrol never says. Without
            # slurmdbd, scontrol's word is what there is.
            final = _sacct_state(job_id)
            if final:
                state, _, by = final.partition(" ")
                reason = ", ".join(filter(None, [by, reason]))
                uid = re.fullmatch(r"by (\d+)", by.strip())
                cancelled_by = int(uid.group(1)) if uid else None
        return JobState(job_id, state, state not in self._LIVE, reason,
                        exit_code=fields.get("ExitCode", ""), cancelled_by=cancelled_by)


class PbsScheduler(BatchScheduler):
    """PBS/Torque: qsub / qstat -f / qdel (also SLURM's Torque-style wrappers)."""

    kind = "pbs"
    directive = "#PBS"
    submit_command = ["qsub", "-V"]
    cancel_command = "qdel"

    queue_flag = "-q"

    def resources(self, spec: CoordinatorJobSpec, job_name: str) -> list[str]:
        return [f"-N {job_name}", f"-l select=1:ncpus={spec.cores}:mem={spec.memory_mib()}mb",
                f"-l walltime={spec.walltime}"]

    def submit_args(self, log_base: Path) -> list[str]:
        # qsub (the Torque wrappers at least) ignores -o/-e inside the script; the wrapper
        # passes a file pattern to sbatch, real PBS Pro takes a file path.
        if qsub_is_slurm_wrapper():
            return ["-o", f"{log_base}.%j.out", "-e", f"{log_base}.%j.err"]
        return ["-o", f"{log_base}.out", "-e", f"{log_base}.err"]

    def state(self, job_id: str) -> JobState:
        try:
            # -x: finished jobs too (PBS Pro); the Torque wrappers show them without it.
            out = _run(["qstat", "-f", job_id])
        except (OSError, subprocess.TimeoutExpired) as exc:
            return JobState(job_id, "UNKNOWN", None, f"qstat failed: {exc}")
        if out.returncode != 0:
            # 153 = PBSE_UNKJOBID (15001) & 0xff: PBS's and the wrappers' "unknown job", silent.
            if out.returncode == 153 or re.search(r"Unknown Job|Invalid job id", out.stderr + out.stdout, re.I):
                return JobState(job_id, "GONE", True, "the batch system no longer knows the job")
            return JobState(job_id, "UNKNOWN", None, (out.stderr or out.stdout).strip())
        block = _qstat_block(out.stdout, job_id)
        if block is None:  # the wrapper lists every job when it does not know this one
            return JobState(job_id, "GONE", True, "the batch system no longer knows the job")
        fields = dict(re.findall(r"^\s*([\w.]+) = (.*)$", block, re.M))
        state = fields.get("job_state", "UNKNOWN").strip()
        reason = ", ".join(
            f"{k} {fields[k].strip()}" for k in ("Exit_status", "exit_status", "comment") if k in fields
        )
        return JobState(job_id, state, state in {"C", "F", "X", "E"}, reason, says_who_cancelled=False)


def _qstat_block(text: str, job_id: str) -> str | None:
    """The ``qstat -f`` paragraph of ``job_id`` (``Job Id: 123`` or ``123.server``)."""
    for block in re.split(r"\n(?=Job Id:)", text):
        match = re.match(r"Job Id:\s*(\S+)", block.strip())
        if match and match.group(1).split(".")[0] == job_id.split(".")[0]:
            return block
    return None


_SCHEDULERS: dict[str, type[BatchScheduler]] = {"slurm": SlurmScheduler, "pbs": PbsScheduler}


def scheduler_for(kind: str) -> BatchScheduler:
    """The scheduler commands for ``kind`` ("slurm" or "pbs")."""
    try:
        return _SCHEDULERS[kind]()
    except KeyError:
        raise ValueError(f"scheduler {kind!r} is not known: write scheduler: slurm or scheduler: pbs") from None
