"""Public regridding entry points: :func:`regrid` and :func:`area_weighted_mean`.

Methods
-------
``conservative``
    First-order conservative with exact spherical areas: from lat/lon sources by separable
    weights (see :mod:`hpc_workflows.regrid.conservative`), from curvilinear and projected
    sources by exact polygon overlaps (see :mod:`hpc_workflows.regrid.spherical`).
``bilinear``
    From any source grid (see :mod:`hpc_workflows.regrid.bilinear`).
``nearest``
    Nearest source cell centre on the sphere, any source grid.
``aggregate``
    Fine to coarse statistics, any source grid (see :mod:`hpc_workflows.regrid.aggregate`).

Missing values follow :mod:`hpc_workflows.regrid.apply`. The output is on 1-D ``lat``/``lon``
with ``lat_bnds``/``lon_bnds``; data attributes are kept except ``grid_mapping``;
``coordinates`` keeps the scalar and auxiliary coordinates the output still has, and the
horizontal fields they or a ``formula_terms`` name (``surface_altitude``) are regridded too
(rules in :mod:`hpc_workflows.write.cf`); ``cell_methods`` gains ``area: mean`` for
conservative and the statistic for aggregate (bilinear/nearest values are point estimates
and add nothing); global attributes ``hpc_workflows_regrid_*`` record method, weights key,
target grid, source grid kind and the package version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hpc_workflows.regrid.areas import area_weighted_mean
from hpc_workflows.regrid.errors import RegridError
from hpc_workflows.regrid.grids import SourceGrid, describe_origin, read_source_grid
from hpc_workflows.regrid.methods import METHODS, build_weights, check_method, provenance_attrs
from hpc_workflows.regrid.overlap import check_overlap
from hpc_workflows.regrid.select import (VariableInfo, data_variable_names,
                                          horizontal_auxiliaries, referenced_names)
from hpc_workflows.regrid.targets import TargetGrid, parse_target_grid
from hpc_workflows.write.cf import band_attrs, cell_methods_for_output, filter_references

__all__ = ["METHODS", "regrid", "area_weighted_mean", "build_weights", "data_variables"]

_CARRIED_ENCODING = ("dtype", "units", "calendar", "scale_factor", "add_offset", "_FillValue",
                     "missing_value")


def data_variables(ds: xr.Dataset, variables: list[str] | None = None) -> list[str]:
    """The variables :func:`regrid` regrids: ``variables`` (checked to exist), or by default
    those :mod:`hpc_workflows.regrid.select` picks (never cell bounds or coordinates).

    Raises
    ------
    RegridError
        Naming the file when a requested variable is missing or there is nothing to regrid.
    """
    if variables is not None:
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise RegridError(f"{describe_origin(ds)}: variables {missing} not found; "
                              f"available: {sorted(map(str, ds.data_vars))}")
        return list(variables)
    # xarray moves a "coordinates" attribute into the encoding when it decodes it.
    referenced = referenced_names([{**v.encoding, **v.attrs} for v in ds.variables.values()])
    names = data_variable_names(
        {str(n): VariableInfo(tuple(map(str, da.dims)), da.attrs, da.dtype, da.size)
         for n, da in ds.data_vars.items()}, referenced, set(map(str, ds.dims)))
    if not names:
        raise RegridError(f"{describe_origin(ds)}: no numeric data variable with 2 or more "
                          "dimensions to regrid (cell bounds and coordinates are not data)")
    return names


def _infos(ds: xr.Dataset) -> dict[str, VariableInfo]:
    """Every variable, with the ``coordinates`` xarray moved into the encoding put back."""
    infos = {}
    for n, v in ds.variables.items():
        attrs = dict(v.attrs)
        if "coordinates" in v.encoding and "coordinates" not in attrs:
            attrs["coordinates"] = v.encoding["coordinates"]
        infos[str(n)] = VariableInfo(tuple(map(str, v.dims)), attrs, v.dtype, v.size)
    return infos


def _target_coords(target: TargetGrid) -> dict[str, Any]:
    lat = xr.Variable(("lat",), target.lat, {
        "standard_name": "latitude", "long_name": "latitude", "units": "degrees_north",
        "axis": "Y", "bounds": "lat_bnds"})
    lon = xr.Variable(("lon",), target.lon, {
        "standard_name": "longitude", "long_name": "longitude", "units": "degrees_east",
        "axis": "X", "bounds": "lon_bnds"})
    return {"lat": lat, "lon": lon,
            "lat_bnds": xr.Variable(("lat", "bnds"), target.lat_bnds),
            "lon_bnds": xr.Variable(("lon", "bnds"), target.lon_bnds)}


def _append_cell_method(attrs: dict[str, Any], text: str) -> None:
    old = str(attrs.get("cell_methods", "")).strip()
    attrs["cell_methods"] = f"{old} {text}".strip()


def regrid(
    ds: xr.Dataset,
    target: TargetGrid | str | dict[str, Any],
    method: str = "conservative",
    *,
    variables: list[str] | None = None,
    min_valid_fraction: float = 0.5,
    weights_dir: Path | None = None,
    statistics: list[str] | None = None,
    bands: list[tuple[float, float]] | None = None,
) -> xr.Dataset:
    """Regrid the spatial data variables of ``ds`` to a latitude/longitude target grid.

    Parameters
    ----------
    ds
        CF dataset; all selected variables must share one horizontal grid.
    target
        A :class:`TargetGrid` or any spec accepted by :func:`parse_target_grid`.
    method
        ``"conservative"``, ``"bilinear"``, ``"nearest"`` or ``"aggregate"``.
    variables
        Data variables to regrid (default: every numeric variable with >= 2 dimensions).
    min_valid_fraction
        Minimum valid weight for a target value (see :mod:`hpc_workflows.regrid.apply`);
        for ``aggregate``, the minimum fraction of a target cell's source cells that are
        valid.
    weights_dir
        Folder for the weights cache; ``None`` builds weights in memory every call.
    statistics
        ``aggregate`` only: any of ``mean``, ``min``, ``max``, ``sum``, ``count``,
        ``fraction`` (default ``["mean"]``).
    bands
        ``aggregate`` with ``fraction``: value bands ``(low, high)``, ``low <= x < high``
        (use ``float('inf')`` for an open top band).

    Returns
    -------
    xarray.Dataset
        Regridded variables on 1-D ``lat``/``lon`` with bounds; variables without the
        horizontal dimensions (e.g. ``time_bnds``) are carried over unchanged. Lazy input
        gives lazy output.

    Raises
    ------
    ValueError
        :class:`RegridError` / :class:`GridError` naming the file and variable for an
        unknown method, an uninterpretable grid, a target that does not overlap the source
        or variables on different grids.
    """
    check_method(method, statistics)
    tgt = parse_target_grid(target)
    names = data_variables(ds, variables)
    grid = read_source_grid(ds, names[0], geodetic=tgt.geodetic)
    # Horizontal fields the data refer to (surface_altitude in formula_terms) are
    # regridded with them, so the references stay resolvable.
    aux = horizontal_auxiliaries(_infos(ds), names, grid.dims)
    aux_vars: dict[str, xr.DataArray] = {}
    origin: dict[str, str] = {}  # regridded output variable -> its source variable
    for name in names[1:]:
        if not set(grid.dims) <= set(map(str, ds[name].dims)):
            raise RegridError(f"{describe_origin(ds, name)}: dims {ds[name].dims} do not "
                              f"include the horizontal dims {grid.dims} of {names[0]!r}; "
                              "regrid variables on different grids in separate calls")

    if method == "aggregate":
        from hpc_workflows.regrid.aggregate import aggregate_dataarray, aggregate_index

        index = aggregate_index(grid, tgt)
        check_overlap(grid, tgt, method, bool(np.any(index >= 0)),
                      describe_origin(ds, names[0]))
        from hpc_workflows.regrid.weights import weights_key

        key = weights_key(grid.grid_hash(), tgt.grid_hash(), "aggregate")
        new_vars: dict[str, xr.DataArray] = {}
        for name in names:
            for out_name, arr in aggregate_dataarray(
                    ds[name], index, grid.dims, tgt.shape, statistics=statistics or ["mean"],
                    bands=bands, min_valid_fraction=min_valid_fraction).items():
                new_vars[out_name] = arr
                origin[out_name] = name
        for name in aux:
            arr = aggregate_dataarray(ds[name], index, grid.dims, tgt.shape, ["mean"],
                                      min_valid_fraction=min_valid_fraction)[name]
            arr.attrs = dict(ds[name].attrs)  # a coordinate: no cell_methods
            aux_vars[name] = arr
    else:
        w = build_weights(grid, tgt, method, weights_dir)
        check_overlap(grid, tgt, method, bool(np.any(w.coverage() > 0)),
                      describe_origin(ds, names[0]))
        from hpc_workflows.regrid.apply import apply_weights

        key = w.key
        new_vars = {}
        for name in names + aux:
            out = apply_weights(ds[name], w, grid.dims, min_valid_fraction=min_valid_fraction)
            attrs = dict(ds[name].attrs)
            if method == "conservative" and name not in aux:
                _append_cell_method(attrs, "area: mean")
            out.attrs = attrs
            if name in aux:
                aux_vars[name] = out
            else:
                new_vars[name] = out
                origin[name] = name

    out = _assemble(ds, names, grid, tgt, {**new_vars, **aux_vars}, method, key,
                    min_valid_fraction, set(aux_vars))
    _resolve_references(out, ds, origin, grid)
    return out


def _resolve_references(out: xr.Dataset, ds: xr.Dataset, origin: dict[str, str],
                        grid: SourceGrid) -> None:
    """Point every variable's references at variables ``out`` has (see
    :mod:`hpc_workflows.write.cf`), give the regridded ones (``origin``: output name to
    source name) the source's ``coordinates`` and cell_methods over ``out``'s dimensions,
    and the band coordinates of ``aggregate`` their long_name and units."""
    present = set(map(str, out.variables))
    scalars = {str(n) for n, v in out.variables.items() if v.ndim == 0}
    standard = {str(v.attrs["standard_name"]) for v in out.variables.values()
                if "standard_name" in v.attrs}
    rename = {grid.dims[0]: "lat", grid.dims[1]: "lon"}
    for name, var in out.variables.items():
        attrs = dict(var.attrs)
        if name in origin:
            source = ds.variables[origin[name]]
            coords = str(source.attrs.get("coordinates", source.encoding.get("coordinates", "")))
            if "band" in var.dims:
                coords += " band_lower band_upper"
            if coords.strip():
                # Explicit, or xarray would tie every scalar coordinate to every variable.
                attrs["coordinates"] = coords.strip()
            if "cell_methods" in attrs:
                attrs["cell_methods"] = cell_methods_for_output(
                    str(attrs["cell_methods"]), rename, set(map(str, var.dims)) | scalars | standard)
                if not attrs["cell_methods"]:
                    del attrs["cell_methods"]
        elif name in ("band_lower", "band_upper") and origin:
            first = ds.variables[next(iter(origin.values()))]
            attrs.update(band_attrs(str(name), first.attrs.get("units")))
        var.attrs = filter_references(attrs, present)


def _assemble(ds: xr.Dataset, names: list[str], grid: SourceGrid, tgt: TargetGrid,
              new_vars: dict[str, xr.DataArray], method: str, key: str,
              min_valid_fraction: float, as_coords: set[str] = frozenset()) -> xr.Dataset:
    spatial = set(grid.dims)
    grid_mappings = {str(ds[n].attrs.get("grid_mapping", "")).split(":")[0] for n in names}
    keep: dict[str, Any] = {}
    for name, var in ds.data_vars.items():
        if name in names or name in grid_mappings or spatial & set(map(str, var.dims)):
            continue
        keep[str(name)] = var
    coords = {str(n): c for n, c in ds.coords.items()
              if not (spatial & set(map(str, c.dims))) and str(n) not in ("lat", "lon",
                                                                          "lat_bnds", "lon_bnds")}
    out_vars = {}
    for name, da in new_vars.items():
        stale = [c for c in da.coords if c in ("lat", "lon", "lat_bnds", "lon_bnds")
                 or spatial & set(map(str, da.coords[c].dims))]
        da = da.drop_vars(stale, errors="ignore")
        attrs = dict(da.attrs)
        attrs.pop("grid_mapping", None)
        attrs.pop("coordinates", None)
        da.attrs = attrs
        da.encoding = {}
        out_vars[name] = da
    data = {n: v for n, v in out_vars.items() if n not in as_coords}
    coords.update({n: v for n, v in out_vars.items() if n in as_coords})
    out = xr.Dataset({**keep, **data}, coords={**coords, **_target_coords(tgt)},
                     attrs=dict(ds.attrs))
    for name, var in out.variables.items():
        # Carried-over variables keep how they were stored (time_bnds as float64 hours,
        # not the int64 xarray would choose); regridded ones are new floats.
        var.encoding = {
            k: v for k, v in ds[name].encoding.items() if k in _CARRIED_ENCODING
        } if name in ds.variables and name not in names and name not in as_coords else {}
    out.attrs.update(provenance_attrs(method, key, tgt, grid, min_valid_fraction,
                                      ds.encoding.get("source")))
    return out
