"""Every run config shipped in configs/ validates (what users copy must at least be right)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpc_workflows.config import validate_workflow_config
from tests.conftest import REPO

CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name != "sample_manifest.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    raw = yaml.safe_load(path.read_text())
    section = raw["ops"]["fetch_and_regrid"]["config"]
    cfg = validate_workflow_config(section)
    assert cfg.output.name
    assert "execution" in raw, f"{path.name}: say which executor/cluster it runs on"
    # The whole run config, executor section included, as Dagster checks it at launch.
    from dagster import validate_run_config

    from hpc_workflows.definitions import fetch_and_regrid_job

    validate_run_config(fetch_and_regrid_job, raw)


def test_shipped_configs_found() -> None:
    assert {"dev.yaml", "radar_archive_example.yaml"} <= {p.name for p in CONFIGS}
