"""Regridding to latitude/longitude grids (plain Python, no Dagster).

Public API: :func:`parse_target_grid`, :func:`regrid`, :func:`area_weighted_mean` and, for
netCDF file to netCDF file with bounded memory, :func:`regrid_file`.

Attributes are resolved lazily so that ``hpc_workflows.regrid.stream`` (the netCDF4-only
fast path) can be imported without paying for importing xarray and dask.
"""

from __future__ import annotations

from hpc_workflows.lazy_exports import lazy_exports

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

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
