"""The one check that a target grid and a source grid have something in common."""

from __future__ import annotations

import numpy as np

from hpc_workflows.regrid.errors import RegridError
from hpc_workflows.regrid.grids import SourceGrid
from hpc_workflows.regrid.targets import TargetGrid

__all__ = ["check_overlap"]


def check_overlap(grid: SourceGrid, target: TargetGrid, method: str, any_value: bool,
                  origin: str) -> None:
    """Raise a :class:`RegridError` saying why no target cell would get a value.

    Parameters
    ----------
    grid, target
        Source and target grid.
    method
        Regridding method.
    any_value
        Whether the method's weights (or aggregation index) give any target cell a value;
        nothing is checked when they do.
    origin
        ``file 'x.nc', variable 'tas'`` for the message.

    Raises
    ------
    RegridError
        "does not overlap" only when no target cell contains a source cell centre. When
        one does (e.g. a target cell that contains the whole source domain) but a point
        method (bilinear, nearest: values at target cell centres) finds no target centre
        inside the source, the message says so and how to fix it.
    """
    if any_value:
        return
    if method in ("bilinear", "nearest"):
        from hpc_workflows.regrid.aggregate import aggregate_index

        if np.any(aggregate_index(grid, target) >= 0):
            raise RegridError(
                f"{origin}: the target grid ({target.spec}) overlaps the source grid, but "
                f"none of its cell centres lies inside the source domain, and method "
                f"{method!r} gives values at target cell centres. Use method 'aggregate' "
                "(or 'conservative' from a latitude/longitude source), or a finer target grid")
    raise RegridError(f"{origin}: the target grid ({target.spec}) does not overlap the source "
                      "grid")
