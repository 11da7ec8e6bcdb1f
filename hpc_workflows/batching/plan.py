"""Planning a run: which files still need work (by the ledger), cut into batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hpc_workflows.batching.files import split_complete
from hpc_workflows.batching.job import BatchJob, default_files_per_step
from hpc_workflows.batching.ledger import Ledger
from hpc_workflows.fetch import Source

__all__ = ["WorkPlan", "plan_work"]


@dataclass
class WorkPlan:
    """The files of a run split into those already complete and batches of those to do."""

    complete: list[Source]
    batches: list[list[Source]]
    files_per_step: int

    @property
    def todo(self) -> int:
        """Number of files still to do."""
        return sum(len(b) for b in self.batches)


def plan_work(sources: Sequence[Source], job: BatchJob, files_per_step: int | None = None,
              ledger: Ledger | None = None) -> WorkPlan:
    """Split ``sources`` into complete ones (ledger rule, one ``stat`` per output) and batches.

    Parameters
    ----------
    sources
        Every source of the run, in order.
    job
        The run's shared settings (output names, settings hash).
    files_per_step
        Files per batch; None chooses :func:`~hpc_workflows.batching.job.default_files_per_step`
        from the number of files still to do.
    ledger
        The output folder's ledger (opened here if not given).

    Returns
    -------
    WorkPlan
    """
    ledger = ledger or Ledger(job.output_dir)
    complete, todo = split_complete(sources, job, ledger)
    size = files_per_step or default_files_per_step(len(todo))
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    return WorkPlan(complete=complete, batches=batches, files_per_step=size)
