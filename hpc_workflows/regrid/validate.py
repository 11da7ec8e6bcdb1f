"""Checks across input files before they are regridded or combined."""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from hpc_workflows.regrid.errors import RegridError
from hpc_workflows.regrid.grids import describe_origin

__all__ = ["check_consistent_units"]


def check_consistent_units(datasets: Sequence[xr.Dataset],
                           variables: Sequence[str] | None = None) -> None:
    """Raise if a variable has different ``units`` in different files.

    Parameters
    ----------
    datasets
        Opened inputs (their ``encoding["source"]`` names the file in the message).
    variables
        Variables to compare (default: data variables of the first dataset).

    Raises
    ------
    RegridError
        Naming the variable, both files and both units (e.g. ``K`` vs ``degC``).
    """
    if not datasets:
        return
    names = list(variables) if variables is not None else [str(v) for v in datasets[0].data_vars]
    for name in names:
        first = None
        for ds in datasets:
            if name not in ds.variables:
                raise RegridError(f"{describe_origin(ds)}: variable {name!r} is missing "
                                  "(present in the other input files)")
            units = str(ds[name].attrs.get("units", "")).strip()
            if first is None:
                first = (ds, units)
            elif units != first[1]:
                raise RegridError(
                    f"variable {name!r} has units {first[1]!r} in "
                    f"{describe_origin(first[0])} but {units!r} in {describe_origin(ds)}; "
                    "convert the inputs to one unit before combining them")
