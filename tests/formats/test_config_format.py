"""source.format: validated with the rest of the config, before any work."""

from __future__ import annotations

import copy

import yaml

from tests.conftest import workflow_section


def test_unknown_format_is_refused_by_check_config(tmp_path, demo_run_config, capsys):
    from hpc_workflows.cli import main

    cfg = copy.deepcopy(demo_run_config)
    workflow_section(cfg)["source"]["format"] = "hdf4"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["check-config", str(path)]) == 1
    out = capsys.readouterr()
    msg = out.out + out.err
    assert "source.format='hdf4'" in msg and "nimrod" in msg and "grib" in msg
    assert "Traceback" not in msg


def test_known_formats_are_accepted(tmp_path, demo_run_config):
    from hpc_workflows.cli import main

    for name in ("auto", "netcdf", "nimrod", "pp", "grib"):
        cfg = copy.deepcopy(demo_run_config)
        workflow_section(cfg)["source"]["format"] = name
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main(["check-config", str(path)]) == 0, name


def test_format_reaches_the_merge_settings(demo_run_config):
    from hpc_workflows.config import WorkflowConfig
    from hpc_workflows.pipeline.settings import batch_job

    section = copy.deepcopy(workflow_section(demo_run_config))
    section["source"]["format"] = "nimrod"
    assert batch_job(WorkflowConfig(**section)).source_format == "nimrod"
