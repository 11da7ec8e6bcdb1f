"""Refusal wordings of batch systems we cannot run here (PBS Pro, Torque) -> the field to change.

The SLURM and SLURM-qsub wordings are tested for real in test_rejected_worker_jobs.py.
"""

from __future__ import annotations

import logging

import pytest

from hpc_workflows.hpc.refusal import install_log_filter, mark_reported, refusal_message


def _jobqueue_error(stderr: str) -> str:
    """The text dask-jobqueue's RuntimeError carries for a failed submit command."""
    return ("Command exited with non-zero exit code.\nExit code: 1\nCommand:\nqsub /tmp/x.sh\n"
            f"stdout:\n\nstderr:\n{stderr}\n\n")


@pytest.mark.parametrize(("stderr", "field"), [
    ("qsub: Unknown queue", "queue"),  # PBS Pro
    ("qsub: submit error (Unknown queue MSG=requested queue not found)", "queue"),  # Torque
    ("qsub: Job exceeds queue and/or server resource limits", "cores"),
    ("qsub: Insufficient amount of resource: mem (1000000gb > 512gb)", "memory"),
    ("qsub: Job violates queue and/or server resource limits: walltime", "walltime"),
    ("qsub: Invalid account, available accounts: proj1", "account"),
    ("sbatch: error: Invalid qos specification", "job_extra_directives"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition "
     "combination specified", "account"),
])
def test_refusal_names_the_field(stderr, field):
    message = refusal_message("pbs", _jobqueue_error(stderr))
    assert message.splitlines()[0] == "  " + stderr
    assert message.splitlines()[-1].startswith(f"change execution.config.cluster.pbs.{field}:")
    assert "Command exited" not in message


def test_unknown_refusal_lists_the_fields_to_check():
    message = refusal_message("slurm", _jobqueue_error("sbatch: error: something new"))
    assert "check execution.config.cluster.slurm.queue" in message


def test_traceback_of_a_reported_refusal_is_not_logged_again(caplog):
    install_log_filter()
    logger = logging.getLogger("tornado.application")
    for reported in (True, False):
        try:
            raise RuntimeError("Command exited with non-zero exit code.")
        except RuntimeError as exc:
            if reported:
                mark_reported(exc)
            logger.error("Exception in callback", exc_info=True)
    assert len([r for r in caplog.records if r.name == "tornado.application"]) == 1
