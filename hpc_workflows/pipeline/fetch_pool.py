"""The run's ``fetch`` worker pool, as the ``fetch_and_regrid`` job sees it in the run config.

When ``execution.config.worker_pools`` defines a pool named ``fetch`` (:data:`FETCH_POOL`),
the job fetches each batch on that pool and regrids it on the default cluster, handing the
files over through ``output.workdir`` (docs/production.md, "Worker pools").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FETCH_POOL", "fetch_pool_of", "regrid_workers_of", "shared_workdir_problem"]

#: The worker pool (a key of ``execution.config.worker_pools``) whose nodes fetch: when a run
#: defines it, each batch is fetched there and regridded on the default cluster.
FETCH_POOL = "fetch"


def _executor_config(run_config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The run's ``execution.config`` (empty when the run names no executor config)."""
    return (run_config.get("execution") or {}).get("config") or {}


def fetch_pool_of(run_config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The run's ``fetch`` worker pool config, or None when the run has none."""
    return (_executor_config(run_config).get("worker_pools") or {}).get(FETCH_POOL)


def regrid_workers_of(run_config: Mapping[str, Any]) -> int | None:
    """The most workers the default cluster (where batches are regridded) may have: ``scale``,
    else ``adapt.maximum``; None when the run config does not say."""
    execution = _executor_config(run_config)
    most = execution.get("scale") or (execution.get("adapt") or {}).get("maximum")
    return int(most) if most else None


def _node_local_dirs(run_config: Mapping[str, Any]) -> list[tuple[str, Path]]:
    """(field, folder) of each cluster's ``local_directory`` (node-local scratch) in the run."""
    found = []
    execution = _executor_config(run_config)
    places = [("execution.config", execution)] + [
        (f"execution.config.worker_pools.{name}", pool)
        for name, pool in (execution.get("worker_pools") or {}).items()]
    for where, settings in places:
        for kind, cluster in ((settings or {}).get("cluster") or {}).items():
            local = (cluster or {}).get("local_directory") if isinstance(cluster, Mapping) else None
            if local:
                path = Path(os.path.expanduser(os.path.expandvars(local))).resolve()
                found.append((f"{where}.cluster.{kind}.local_directory", path))
    return found


def shared_workdir_problem(workdir: Path, run_config: Mapping[str, Any]) -> str | None:
    """Why ``workdir`` cannot hand fetched files to another node, or None when it may.

    What can be checked before the run: the fetch pool's nodes write it and the compute nodes
    read it, so it must not be a cluster's node-local ``local_directory``. (Whether it is on a
    shared filesystem is seen only on the nodes: regrid_batch names the file and both nodes.)
    """
    for field_name, local in _node_local_dirs(run_config):
        if workdir == local or local in workdir.parents:
            return (f"output.workdir ({workdir}) is under {field_name} ({local}), node-local "
                    f"scratch: with a '{FETCH_POOL}' worker pool the files fetched on its nodes are "
                    "regridded on the compute nodes, so set output.workdir to a folder on a "
                    "filesystem both see (e.g. under output.directory, the default)")
    return None
