"""A re-run with nothing to do pays only for what it uses (issue 13: <= 5 % of the first run).

Its process plans, finds every output complete in the ledger and writes the summary: it must
not import pandas (~0.7 s, for calendar steps and time aggregation), distributed (~0.8 s, for
clusters, opened only when a step needs a worker) or xarray. Fixed planning steps (``"24h"``)
are parsed without pandas, to the same value pandas gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.batching.conftest import make_sources

HEAVY = ("pandas", "distributed", "xarray")


def _modules_loaded_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    code += f"\nimport sys; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize("step", ["24h", "1D", "6h", "30min", "10s", "1W", "1 day", "2 days",
                                  "3 hours", "5 minutes", "1 sec", "1hr", "1day6h", "1h30min",
                                  "1 day, 6 hours", "+1h", "01h", " 24h ", "1 D", "7m"])
def test_fixed_steps_mean_what_pandas_says(step):
    import pandas as pd

    from hpc_workflows.fetch import parse_step

    assert parse_step(step) == pd.Timedelta(step.strip()).to_pytimedelta()


@pytest.mark.parametrize(("step", "expected"), [("1.5h", timedelta(hours=1.5)),
                                                ("1 days 02:00:00", timedelta(days=1, hours=2)),
                                                ("P1D", timedelta(days=1))])
def test_other_fixed_steps_still_go_through_pandas(step, expected):
    from hpc_workflows.fetch import parse_step

    assert parse_step(step) == expected


def test_a_plain_step_does_not_import_pandas():
    loaded = _modules_loaded_after(
        "from hpc_workflows.config import check_step; from hpc_workflows.fetch import parse_step\n"
        "check_step('24h', 'window.step'); assert str(parse_step('1 day 6 hours')) == '1 day, 6:00:00'")
    assert loaded == []


@pytest.mark.slow
def test_a_rerun_with_nothing_to_do_imports_no_heavy_library(tmp_path, dagster_home, monkeypatch):
    """The run's own process, through Dagster and the HPC executor: no cluster is opened, and
    none of pandas, distributed, xarray is imported (before this change pandas and distributed were)."""
    from hpc_workflows.batching import Ledger
    from hpc_workflows.config import validate_workflow_config
    from hpc_workflows.pipeline.settings import batch_job, planned_sources

    monkeypatch.chdir(tmp_path)  # the summary and any relative path stay in this test's folder
    make_sources(tmp_path / "archive", 3)
    workflow = {
        "window": {"start": "2020-01-01", "end": "2020-01-03", "step": "24h"},
        "source": {"template": str(tmp_path / "archive") + "/{dt:%Y%m%d}.nc", "retries": 0},
        "regrid": {"method": "conservative", "target": {"name": "global_10deg"},
                   "weights_dir": str(tmp_path / "weights")},
        "output": {"directory": str(tmp_path / "out"), "name": "tas"},
    }
    # Every output recorded complete through the real ledger, as a first run leaves them.
    job = batch_job(validate_workflow_config(workflow))
    job.output_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(job.output_dir)
    for source in planned_sources(validate_workflow_config(workflow)):
        for wanted in job.outputs_for(source).values():
            wanted.path.write_bytes(b"placeholder")
            ledger.record(wanted, input_sha256="0" * 64)
    config = tmp_path / "rerun.yaml"
    config.write_text(yaml.safe_dump({
        "ops": {"fetch_and_regrid": {"config": workflow}},
        "execution": {"config": {"cluster": {"local": {"threads_per_worker": 1}}, "scale": 1}}}))

    loaded = _modules_loaded_after(
        "import yaml\n"
        "from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable\n"
        "from hpc_workflows.definitions import fetch_and_regrid_job\n"
        "with DagsterInstance.get() as instance:\n"
        "    result = execute_job(reconstructable(fetch_and_regrid_job), instance=instance,\n"
        f"                         run_config=yaml.safe_load(open({str(config)!r})))\n"
        "    assert result.success\n"
        "    engine = [e.message for e in result.all_events\n"
        "              if e.event_type == DagsterEventType.ENGINE_EVENT]\n"
        "    assert not [m for m in engine if 'Dask cluster' in m], engine\n")
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["already_complete"] == 3
    assert loaded == []


def test_provenance_and_aggregate_modules_load_without_xarray():
    # A worker that streams its output reads INCOMPLETE_ATTR and provenance_attrs from these:
    # they import xarray where they build datasets, not when they load.
    loaded = _modules_loaded_after(
        "from hpc_workflows.temporal.aggregate import INCOMPLETE_ATTR\n"
        "from hpc_workflows.write.provenance import provenance_attrs\n"
        "assert provenance_attrs({}, sources=[{'url': 'u', 'sha256': 'ab'}])['hpc_workflows_sources'] == 'u sha256:ab'")
    assert loaded == []
