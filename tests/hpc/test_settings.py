"""Executor config validation and walltime arithmetic (no cluster needed)."""

from __future__ import annotations

import pytest

from hpc_workflows.hpc.settings import validate_executor_settings
from hpc_workflows.hpc.walltime import lifetime_for, parse_walltime


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("01:30:00", 5400), ("45:00", 2700), ("30", 1800), ("1-02:00:00", 93600), ("2-0", 172800)],
)
def test_walltime_forms(text, seconds):
    assert parse_walltime(text) == seconds


def test_lifetime_keeps_a_margin_inside_the_walltime():
    life = lifetime_for(3600)
    assert life.lifetime == 3600 - 360
    assert life.lifetime + life.stagger < 3600
    assert lifetime_for(600).lifetime == 540  # margin at least 60 s


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cluster": {"slurm": {}}}, "cluster.slurm needs scale"),
        ({"cluster": {"pbs": {"walltime": "soon"}}, "scale": 1}, "walltime 'soon' is not a walltime"),
        ({"cluster": {"slurm": {"cores": 3, "processes": 2}}, "scale": 1}, "must be a multiple of processes"),
        ({"cluster": {"slurm": {"qeueu": "normal"}}, "scale": 1}, "execution.config.cluster.slurm.qeueu: unknown field"),
        ({"cluster": {"slurm": {}, "pbs": {}}, "scale": 1}, "exactly one kind"),
        ({"cluster": {"local": {}}, "scale": 2, "adapt": {"maximum": 3}}, "not both"),
        ({"cluster": {"slurm": {"memory": "lots"}}, "scale": 1}, "memory 'lots' is not a size"),
        ({"cluster": {"existing": {"address": "tcp://h:1"}}, "scale": 1}, "do not apply to an existing"),
    ],
)
def test_bad_config_names_the_field_and_the_fix(config, message):
    with pytest.raises(ValueError, match="invalid HPC executor config") as err:
        validate_executor_settings(config)
    assert message in str(err.value)


def test_defaults_tls_on_for_batch_and_local():
    batch = validate_executor_settings({"cluster": {"slurm": {}}, "adapt": {"maximum": 4}})
    assert batch.cluster.slurm.tls is True
    assert batch.workers_wanted() == (0, 4)
    local = validate_executor_settings({})
    # loopback is shared by every user of the node (tests/hpc/test_local_cluster_security.py)
    assert local.cluster.kind == "local" and local.cluster.local.tls is True


def test_resource_tag_is_dagster_dasks_contract():
    import json

    from dagster_dask.executor import get_dask_resource_requirements

    from hpc_workflows.hpc.executor import DASK_RESOURCE_REQUIREMENTS_KEY, dask_resource_requirements

    tags = {DASK_RESOURCE_REQUIREMENTS_KEY: json.dumps({"GPU": 1, "MEM": 2.5})}
    assert dask_resource_requirements(tags) == get_dask_resource_requirements(tags)
    assert dask_resource_requirements({}) == {} == get_dask_resource_requirements({})
    for bad in ("[1, 2]", "{GPU: 1}", '{"GPU": "many"}'):
        with pytest.raises(ValueError, match="must be a JSON object of numbers"):
            dask_resource_requirements({DASK_RESOURCE_REQUIREMENTS_KEY: bad})


def test_loading_the_jobs_does_not_import_dagster_dask_or_xarray():
    # dagster_dask's __init__ imports dask.dataframe (pandas, pyarrow, dask.array): 1.7 s in
    # every process that loads the jobs, each Dask worker included. xarray (~0.3 s more) and
    # pandas (~0.6 s, for calendar steps in fetch planning) are imported by the steps that
    # use them, not by every `dagster` command and UI reload.
    import subprocess
    import sys

    code = ("import sys, hpc_workflows.definitions; print([m for m in "
            "('dagster_dask', 'dask.dataframe', 'xarray', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
