"""Invalid run config fails before any work starts, naming the field and the fix."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance, DagsterInvalidConfigError

from tests.conftest import REPO, workflow_section


def _launch(run_config: dict[str, Any]) -> None:
    from hpc_workflows.definitions import fetch_and_regrid_job

    with DagsterInstance.ephemeral() as instance:
        fetch_and_regrid_job.execute_in_process(run_config=run_config, instance=instance)


def _bad(demo_run_config: dict[str, Any], change) -> tuple[str, Path]:
    cfg = copy.deepcopy(demo_run_config)
    change(workflow_section(cfg))
    cfg.pop("execution", None)
    out = Path(workflow_section(cfg)["output"]["directory"])
    with pytest.raises(DagsterInvalidConfigError) as info:
        _launch(cfg)
    # Nothing was done: no output folder, no downloads.
    assert not out.exists()
    return str(info.value), out


def test_unknown_key(demo_run_config):
    msg, _ = _bad(demo_run_config, lambda c: c["regrid"].update(mehtod="bilinear"))
    assert '"mehtod"' in msg and "regrid" in msg


def test_wrong_type(demo_run_config):
    msg, _ = _bad(demo_run_config, lambda c: c["output"].update(compression_level="high"))
    assert "compression_level" in msg and "Int" in msg


def test_end_before_start(demo_run_config):
    def change(c):
        c["window"].update(start="2020-02-17", end="2020-02-14")

    msg, _ = _bad(demo_run_config, change)
    assert "window.end" in msg and "before window.start" in msg and "set end on or after start" in msg


def test_not_a_date(demo_run_config):
    msg, _ = _bad(demo_run_config, lambda c: c["window"].update(start="14/02/2020"))
    assert "window.start" in msg and "ISO 8601" in msg


def test_missing_source_path(demo_run_config, tmp_path):
    missing = tmp_path / "no_such_manifest.yaml"
    msg, _ = _bad(demo_run_config, lambda c: c["source"].update(manifest=str(missing)))
    assert "source.manifest" in msg and "does not exist" in msg and str(missing) in msg


def test_unknown_target_grid(demo_run_config):
    msg, _ = _bad(demo_run_config, lambda c: c["regrid"].update(target={"name": "global_banana"}))
    assert "regrid.target" in msg and "global_banana" in msg


def test_unknown_method(demo_run_config):
    msg, _ = _bad(demo_run_config, lambda c: c["regrid"].update(method="spline"))
    assert "regrid.method" in msg and "conservative" in msg


def test_template_and_manifest_both_given(demo_run_config):
    msg, _ = _bad(demo_run_config, lambda c: c["source"].update(template="/data/{dt:%Y%m%d}.nc"))
    assert "exactly one of source.template" in msg


def test_command_transport_needs_placeholders(demo_run_config):
    def change(c):
        c["source"].update(transport="command", command=["moo", "get", "{src}"])

    msg, _ = _bad(demo_run_config, change)
    assert "source.command" in msg and "{dest}" in msg


def test_valid_config_passes(demo_run_config):
    from hpc_workflows.config import validate_workflow_config

    cfg = validate_workflow_config(workflow_section(demo_run_config))
    assert cfg.regrid.method == "conservative"
    assert cfg.window.end_datetime > cfg.window.start_datetime


@pytest.mark.slow
def test_cli_reports_field_and_fix(demo_run_config, tmp_path, dagster_home):
    """The message reaches a user who runs the documented dagster command."""
    cfg = copy.deepcopy(demo_run_config)
    workflow_section(cfg)["window"].update(start="2020-02-17", end="2020-02-14")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "hpc_workflows",
         "-j", "fetch_and_regrid", "-c", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "window.end" in proc.stdout + proc.stderr
    assert "set end on or after start" in proc.stdout + proc.stderr


def test_check_config_cli(tmp_path, demo_run_config):
    from hpc_workflows.cli import main

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(demo_run_config))
    assert main(["check-config", str(good)]) == 0
    bad_cfg = copy.deepcopy(demo_run_config)
    workflow_section(bad_cfg)["regrid"]["min_valid_fraction"] = 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_cfg))
    assert main(["check-config", str(bad)]) == 1
