"""Regridding to latitude/longitude grids (plain Python, no Dagster).

Public API: :func:`parse_target_grid`, :func:`regrid`, :func:`area_weighted_mean` and, for
netCDF file to netCDF file with bounded memory, :func:`regrid_file`.

Attributes are resolved lazily so that ``hpc_workflows.regrid.stream`` (the netCDF4-only
fast path) can be imported without paying for importing xarray and dask.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "METHODS": "hpc_workflows.regrid.api",
    "area_weighted_mean": "hpc_workflows.regrid.api",
    "build_weights": "hpc_workflows.regrid.api",
    "regrid": "hpc_workflows.regrid.api",
    "GridError": "hpc_workflows.regrid.errors",
    "RegridError": "hpc_workflows.regrid.errors",
    "SourceGrid": "hpc_workflows.regrid.grids",
    "read_source_grid": "hpc_workflows.regrid.grids",
    "TargetGrid": "hpc_workflows.regrid.targets",
    "parse_target_grid": "hpc_workflows.regrid.targets",
    "regrid_file": "hpc_workflows.regrid.stream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hpc_workflows.regrid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
