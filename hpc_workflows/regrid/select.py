"""Which variables of a file are data to regrid, and which describe the grid.

One rule for both entry points (:func:`hpc_workflows.regrid.regrid` on an xarray dataset and
:func:`hpc_workflows.regrid.regrid_file` on a netCDF4 file), so they always pick the same
variables. A variable is *not* data when it is

- a coordinate variable, or named by another variable's ``coordinates`` attribute
  (auxiliary coordinates such as NEMO's ``nav_lat``);
- a latitude or longitude (by ``standard_name`` or ``units``), referenced or not;
- cell bounds: named by a ``bounds`` attribute, or named like bounds (``bounds_lon``,
  ``vertices_latitude``, ``lat_bnds``, ``lon_bounds``, ``lat_vertices``), or with a last
  dimension of cell vertices (``nvertex``, ``nv``, ``vertices``, ``bnds``, ``axis_nbounds``
  ...). NEMO and CMIP ocean files often store ``bounds_lon(y, x, nvertex)`` without a
  ``bounds`` attribute pointing at it, and as the largest variable it used to be taken for
  the data, failing with an error about missing coordinates.

Of the remaining numeric variables with two or more dimensions, those on the horizontal
dimensions (last two) of the largest one are regridded; the rest (e.g. a ``(time, nv)``
table) are carried over unchanged.

:func:`horizontal_auxiliaries` names the horizontal fields the data refer to (an auxiliary
coordinate such as ``surface_altitude``, named by ``coordinates`` or by a vertical
coordinate's ``formula_terms``): they are regridded too, so the references stay resolvable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from hpc_workflows.write.cf import formula_terms_names

__all__ = ["VariableInfo", "data_variable_names", "horizontal_auxiliaries", "referenced_names"]

_BOUNDS_NAME = re.compile(r"^(bounds|vertices|bnds)_|_(bnds|bounds|bnd|vertices|verts)$",
                          re.IGNORECASE)
_VERTEX_DIM = re.compile(r"^(n?v|n?vertex|n?vertices|n?verts|n?corners?|bnds(_\d+)?|nbnd|"
                         r"n?bounds|axis_nbounds)$", re.IGNORECASE)
_LATLON_STANDARD = ("latitude", "longitude", "grid_latitude", "grid_longitude")
_LATLON_UNITS = ("degrees_north", "degree_north", "degrees_N", "degree_N", "degreesN",
                 "degreeN", "degrees_east", "degree_east", "degrees_E", "degree_E",
                 "degreesE", "degreeE")


class VariableInfo(NamedTuple):
    """What the selection needs to know about one variable."""

    dims: tuple[str, ...]
    attrs: Mapping[str, Any]
    dtype: np.dtype
    size: int


def referenced_names(attrs_of_every_variable: list[Mapping[str, Any]]) -> set[str]:
    """Names that ``bounds`` and ``coordinates`` attributes of any variable refer to."""
    names: set[str] = set()
    for attrs in attrs_of_every_variable:
        for key in ("bounds", "coordinates"):
            names.update(str(attrs.get(key, "")).split())
    return names


def _describes_grid(name: str, info: VariableInfo) -> bool:
    attrs = info.attrs
    if str(attrs.get("standard_name", "")).strip() in _LATLON_STANDARD:
        return True
    if str(attrs.get("units", "")).strip() in _LATLON_UNITS:
        return True
    if _BOUNDS_NAME.search(name):
        return True
    return bool(info.dims) and _VERTEX_DIM.match(info.dims[-1]) is not None


def data_variable_names(variables: Mapping[str, VariableInfo], referenced: set[str],
                        dimension_names: set[str]) -> list[str]:
    """The variables to regrid by default (see the module docstring); ``[]`` when none.

    Parameters
    ----------
    variables
        Candidate variables by name (all variables of the file, or xarray's data variables).
    referenced
        :func:`referenced_names` over every variable of the file.
    dimension_names
        The file's dimension names (coordinate variables are never data).
    """
    names = [n for n, info in variables.items()
             if len(info.dims) >= 2 and np.issubdtype(info.dtype, np.number)
             and n not in dimension_names and n not in referenced
             and not _describes_grid(n, info)]
    if not names:
        return []
    largest = max(names, key=lambda n: variables[n].size)
    grid_dims = variables[largest].dims[-2:]
    return [n for n in names if variables[n].dims[-2:] == grid_dims]


def horizontal_auxiliaries(variables: Mapping[str, VariableInfo], data_names: list[str],
                           grid_dims: tuple[str, str]) -> list[str]:
    """Numeric fields on exactly the horizontal dimensions that the ``coordinates`` of the
    data or any ``formula_terms`` name, other than latitude/longitude and bounds.

    Parameters
    ----------
    variables
        Every variable of the file (for xarray, with ``coordinates`` from the encoding).
    data_names
        The variables being regridded.
    grid_dims
        Their horizontal (y, x) dimensions.
    """
    wanted: set[str] = set()
    for name in data_names:
        wanted.update(str(variables[name].attrs.get("coordinates", "")).split())
    for info in variables.values():
        wanted.update(formula_terms_names(str(info.attrs.get("formula_terms", ""))))
    return sorted(n for n in wanted
                  if n in variables and n not in data_names
                  and tuple(variables[n].dims) == tuple(grid_dims)
                  and np.issubdtype(variables[n].dtype, np.number)
                  and not _describes_grid(n, variables[n]))
