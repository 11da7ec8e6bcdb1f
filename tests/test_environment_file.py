"""environment.yml (conda) must list the same packages with the same pins as pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name where they differ
CONDA_NAMES = {"netcdf4": "netcdf4", "pyyaml": "pyyaml", "scitools-iris": "iris",
               "eccodes": "python-eccodes", "xxhash": "python-xxhash"}
# pip-only wheels with no conda twin: conda-forge's python-eccodes brings the C library itself.
PIP_ONLY = {"eccodeslib"}
SELF = "hpc-workflows"


def _requirements(project: dict, group: str) -> list[str]:
    """An optional-dependency group with references to our own extras expanded."""
    out = []
    for spec in project["optional-dependencies"][group]:
        name = spec.split("[", 1)[0].strip().lower().replace("_", "-")
        if name == SELF:
            for extra in spec.split("[", 1)[1].rstrip("]").split(","):
                out += _requirements(project, extra.strip())
        else:
            out.append(spec)
    return out


def _split(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    assert m, spec
    name = m.group(1).lower().replace("_", "-")
    return CONDA_NAMES.get(name, name), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(s) for s in project["dependencies"] + _requirements(project, "dev")
                  if _split(s)[0] not in PIP_ONLY)
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    have: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, spec = _split(dep)
            have[name] = spec
    missing = sorted(set(wanted) - set(have))
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    differ = {n: (wanted[n], have[n]) for n in wanted if have[n] != wanted[n]}
    assert not differ, f"pins differ (pyproject, environment.yml): {differ}"


def test_dagster_family_pinned_together() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = dict(_split(s) for s in project["dependencies"])
    versions = {pins[n] for n in ("dagster", "dagster-webserver", "dagit", "dagster-graphql", "dagster-dg-cli")}
    assert len(versions) == 1 and next(iter(versions)).startswith("==1.13."), pins
    _, minor, patch = next(iter(versions))[2:].split(".")
    # Integration libraries are released in lock-step: dagster 1.X.Y <-> dagster-dask 0.(X+16).Y
    assert pins["dagster-dask"] == f"==0.{int(minor) + 16}.{patch}", pins
    assert pins["dagster-postgres"] == pins["dagster-dask"], pins
