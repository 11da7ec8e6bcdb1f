"""Fixtures shared by the whole suite."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh persistent Dagster instance folder for one test."""
    from hpc_workflows.instance import ensure_dagster_home

    home = ensure_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def dev_config() -> dict[str, Any]:
    """configs/dev.yaml as a dict (the demo's run config)."""
    return yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())


@pytest.fixture
def demo_run_config(dev_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The demo's run config with outputs in a temporary folder; run from the repo root."""
    monkeypatch.chdir(REPO)
    cfg = copy.deepcopy(dev_config)
    cfg["ops"]["fetch_and_regrid"]["config"]["output"]["directory"] = str(tmp_path / "out")
    return cfg


def workflow_section(run_config: dict[str, Any]) -> dict[str, Any]:
    """The ``ops.fetch_and_regrid.config`` part of a run config."""
    return run_config["ops"]["fetch_and_regrid"]["config"]


os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")

# The second real unix user of the shared-node security tests, for every test module.
from tests.second_user import other_user  # noqa: E402,F401
