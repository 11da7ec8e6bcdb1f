"""Worker pools of one run: the default cluster and the named ``worker_pools``, opened lazily.

At many centres only some nodes reach the tape archive or the internet (a data-mover or
transfer queue), while compute nodes do the number crunching. A run can therefore have several
Dask clusters, each its own batch queue and scaling: the default ``cluster`` and any number of
named pools under ``execution.config.worker_pools``. A step goes to the pool its op names in the
:data:`POOL_TAG` op tag, and to the default cluster when the op carries no tag::

    @op(tags={"hpc_workflows/worker_pool": "fetch"})
    def fetch_raw(...): ...

    execution:
      config:
        cluster: {slurm: {queue: compute, cores: 8, memory: 16GiB}}
        adapt: {minimum: 0, maximum: 20}
        worker_pools:
          fetch: {cluster: {slurm: {queue: datamover, cores: 1}}, scale: 1}

Routing is per op (a Dagster step is the unit of placement): an op's step runs entirely on one
pool. Each pool is opened only when its first step is ready, so a run whose plan needs no fetch
queues no data-mover job. The tag is named ``worker_pool``, not ``pool``, because Dagster's own
``pool`` is an op concurrency limit, a different idea.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .settings import ExecutorSettings

if TYPE_CHECKING:  # imported when a pool opens: distributed costs ~0.8 s a run may not need
    from .clusters import RunCluster

#: Op tag naming the worker pool (a key of ``execution.config.worker_pools``) of the op's steps.
POOL_TAG = "hpc_workflows/worker_pool"


#: Op tag: ``"true"`` when the op's steps exist only in runs that define its pool (its upstream
#: op emits them only then, e.g. the pipeline's ``fetch_batch``), so a run without that pool is
#: not refused for naming it. Without this tag an undefined pool fails the run at its start.
POOL_OPTIONAL_TAG = "hpc_workflows/worker_pool_optional"


def pool_of(tags: Mapping[str, str]) -> str | None:
    """The worker pool an op's tags ask for; ``None`` is the run's default cluster."""
    return tags.get(POOL_TAG) or None


def unknown_pools(settings: ExecutorSettings, steps: Iterable) -> dict[str, list[str]]:
    """Pools named by the steps' tags that the settings do not define: {pool: [step keys]}.

    Checked before anything is submitted, so a misspelt tag fails the run at its start rather
    than after the other pools' batch jobs have run for a while.
    """
    unknown: dict[str, list[str]] = {}
    for step in steps:
        pool = pool_of(step.tags)
        if step.tags.get(POOL_OPTIONAL_TAG) == "true":
            continue
        if pool is not None and pool not in settings.worker_pools:
            unknown.setdefault(pool, []).append(step.key)
    return unknown


def unknown_pools_message(settings: ExecutorSettings, unknown: Mapping[str, list[str]]) -> str:
    """The error for :func:`unknown_pools`: which steps, which pools exist, what to add."""
    have = sorted(settings.worker_pools) or ["none"]
    lines = [f"  - {POOL_TAG}: {pool!r} (steps {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''})"
             for pool, keys in sorted(unknown.items())]
    first = sorted(unknown)[0]
    return (
        "ops of this run ask for worker pools that execution.config.worker_pools does not define "
        f"(defined: {', '.join(have)}):\n" + "\n".join(lines)
        + f"\nAdd e.g. worker_pools: {{{first}: {{cluster: {{slurm: {{queue: ...}}}}, scale: 1}}}}"
    )


class RunPools:
    """The run's clusters by pool name (``None``: the default), each opened on first use.

    Parameters
    ----------
    settings : ExecutorSettings
        The run's validated settings; ``settings.worker_pools`` holds the named pools.
    name : str
        Run-unique cluster name; pools get ``<name>-<pool>`` (shows in ``squeue``/``qstat``).
    """

    def __init__(self, settings: ExecutorSettings, name: str):
        self.settings, self.name = settings, name
        self.opened: dict[str | None, RunCluster] = {}

    def settings_of(self, pool: str | None) -> ExecutorSettings:
        """The cluster and scaling settings of one pool."""
        return self.settings if pool is None else self.settings.worker_pools[pool]

    def name_of(self, pool: str | None) -> str:
        """The cluster (and batch job) name of one pool."""
        return self.name if pool is None else f"{self.name}-{pool}"

    def get(self, pool: str | None) -> RunCluster | None:
        """The pool's cluster if it is open, else ``None``."""
        return self.opened.get(pool)

    def open(self, pool: str | None) -> RunCluster:
        """The pool's cluster, started (and its workers requested) if it is not open yet."""
        if pool not in self.opened:
            from .clusters import open_cluster

            self.opened[pool] = open_cluster(self.settings_of(pool), self.name_of(pool))
        return self.opened[pool]

    def close(self) -> None:
        """Close every opened pool; one failing to close does not keep the others open."""
        errors = []
        for rc in self.opened.values():
            try:
                rc.close()
            except Exception as exc:  # noqa: BLE001 - the rest must still be closed
                errors.append(exc)
        if errors:
            raise errors[0]
