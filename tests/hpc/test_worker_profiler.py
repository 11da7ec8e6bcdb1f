"""A run's workers do not run Dask's statistical profiler: it samples every thread's stack
every 10 ms for a dashboard page these workers never serve (benchmarks/archive_bench.py:
0.019 instead of 0.025 s of CPU overhead per file at 1,000 files)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hpc_workflows.hpc.clusters import batch_cluster_kwargs, open_cluster
from hpc_workflows.hpc.settings import validate_executor_settings

from .conftest import batch_cluster


def _profiler_state(dask_worker) -> tuple[bool, bool]:
    import dask.config

    return (bool(dask.config.get("distributed.worker.profile.enabled")),
            "profile" in dask_worker.periodic_callbacks)


@pytest.mark.slow
def test_local_workers_run_no_profiler(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = validate_executor_settings({"cluster": {"local": {"threads_per_worker": 1}}, "scale": 1})
    rc = open_cluster(settings, "dagster-noprofile")
    try:
        states = rc.client.run(_profiler_state)
        assert states and set(states.values()) == {(False, False)}, states
    finally:
        rc.close()


def test_batch_job_script_turns_the_profiler_off(tmp_path):
    settings = validate_executor_settings({"cluster": {"slurm": batch_cluster(tmp_path)}, "scale": 1})
    kwargs, _ = batch_cluster_kwargs(settings.cluster.settings, "dagster-noprofile", None)
    exports = [line for line in kwargs["job_script_prologue"] if line.startswith("export DASK_")]
    # The job script's lines, run by a shell, as the worker's dask config reads them.
    script = "\n".join([*exports, f"{sys.executable} -c 'import dask.config, distributed; "
                        "print(dask.config.get(\"distributed.worker.profile.enabled\"), "
                        "dask.config.get(\"distributed.worker.http.routes\"))'"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "[]"], out.stdout + out.stderr
