"""Regridding to latitude/longitude grids (plain Python, no Dagster).

Public API: :func:`parse_target_grid`, :func:`regrid`, :func:`area_weighted_mean`.
"""

from hpc_workflows.regrid.api import METHODS, area_weighted_mean, build_weights, regrid
from hpc_workflows.regrid.errors import GridError, RegridError
from hpc_workflows.regrid.grids import SourceGrid, read_source_grid
from hpc_workflows.regrid.targets import TargetGrid, parse_target_grid

__all__ = [
    "METHODS",
    "GridError",
    "RegridError",
    "SourceGrid",
    "TargetGrid",
    "area_weighted_mean",
    "build_weights",
    "parse_target_grid",
    "read_source_grid",
    "regrid",
]
