"""A batch system's refusal of a worker job, said in its own words plus the config field to change.

dask-jobqueue raises ``RuntimeError("Command exited with non-zero exit code ... stderr: ...")``
for a refused ``sbatch``/``qsub`` and tornado logs it with a traceback from the cluster's event
loop. Users need the scheduler's line (``sbatch: error: invalid partition specified: x``) and
which field of ``execution.config.cluster.<kind>`` to change; this module turns the one into
the other and keeps that traceback out of the log.
"""

from __future__ import annotations

import logging
import re

__all__ = ["refusal_message", "mark_reported", "install_log_filter"]

#: Words of a refusal -> the field to change and what to look at (first match wins). The
#: wordings are SLURM's (sbatch and its Torque qsub wrapper) and PBS Pro's/Torque's qsub.
_FIELDS: tuple[tuple[str, str, str], ...] = (
    # before the queue: SLURM says "Invalid account or account/partition combination"
    (r"account|project|allocation|association|budget",
     "account", "an account you may charge (SLURM: `sacctmgr show assoc user=$USER`)"),
    (r"partition|unknown queue|queue .*(not exist|disabled|closed)|invalid queue|no such queue",
     "queue", "the partition (SLURM: `sinfo -s`) or queue (PBS: `qstat -Q`)"),
    (r"memory|\bmem\b|--mem|pmem|vmem",
     "memory", "at most what a node has (SLURM: `sinfo -o '%P %m'`; PBS: `pbsnodes -a`)"),
    (r"time limit|walltime|timelimit",
     "walltime", "at most the queue's limit (SLURM: `sinfo -o '%P %l'`; PBS: `qstat -Qf`)"),
    (r"qos", "job_extra_directives", "the --qos you may use (`sacctmgr show qos`)"),
    (r"node configuration|cpu|core|ncpus|processors|nodes|resource limits",
     "cores", "cores (and memory) that one node of the queue has (`sinfo -o '%P %c %m'`)"),
)

_FALLBACK = ("queue", "account", "walltime", "memory", "cores")


def _scheduler_lines(text: str) -> list[str]:
    """The batch system's own output inside dask-jobqueue's error text (stderr, else stdout)."""
    parts = re.split(r"^(stdout|stderr):\s*$", text, flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    chosen = sections.get("stderr", "").strip() or sections.get("stdout", "").strip()
    if not sections:
        chosen = text.strip()
    lines = [line.strip().strip("'").strip() for line in chosen.splitlines()]
    lines = [line for line in lines if line]
    # SLURM's qsub wrapper wraps sbatch's lines in its own ("There was an error running ...",
    # the command line): the lines that say "error" are the scheduler's reason.
    errors = [line for line in lines if "error" in line.lower() and "There was an error" not in line]
    return errors or lines


def refusal_message(kind: str, error_text: str) -> str:
    """Say why ``kind``'s batch system refused a worker job and which field to change.

    Parameters
    ----------
    kind : {"slurm", "pbs"}
        The cluster kind, as in ``execution.config.cluster.<kind>``.
    error_text : str
        The submission error (dask-jobqueue's text, with the command's stdout/stderr).

    Returns
    -------
    str
        A few lines: the scheduler's own lines, then ``change execution.config.cluster.<kind>.<field>``.
    """
    lines = _scheduler_lines(error_text) or ["(the batch system printed nothing)"]
    said = "\n".join(lines)
    prefix = f"execution.config.cluster.{kind}"
    for pattern, name, what in _FIELDS:
        if re.search(pattern, said, flags=re.I):
            fix = f"change {prefix}.{name}: {what}"
            break
    else:
        fix = f"check {', '.join(f'{prefix}.{n}' for n in _FALLBACK)}"
    return "\n".join(["  " + line for line in lines] + [fix])


_REPORTED = "_hpcw_reported"


def mark_reported(exc: BaseException) -> None:
    """Mark a submission error as reported by us, so that its traceback is not logged again."""
    try:
        setattr(exc, _REPORTED, True)
    except AttributeError:  # an exception type that takes no attributes: just logged twice
        pass


def _not_reported(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not getattr(exc, _REPORTED, False)


def install_log_filter() -> None:
    """Keep tornado from logging the traceback of a submission error we report ourselves.

    A refused job makes dask's cluster task fail, and tornado logs that as
    "Exception in callback ... Traceback"; the run reports the refusal instead (idempotent).
    """
    logger = logging.getLogger("tornado.application")
    if _not_reported not in logger.filters:
        logger.addFilter(_not_reported)
