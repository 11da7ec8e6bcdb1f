"""netCDF file -> netCDF file regridding with bounded memory.

:func:`regrid_file` is the fast path for the common case (a 1-D latitude/longitude source,
any method including ``aggregate``): it talks to netCDF4 directly, processes ``time_chunk``
steps at a time on two threads (each reads a chunk, computes on it while it is in cache, and
writes it; file access is serialised by a lock because netCDF-C is not thread-safe), and
never imports xarray, dask or scipy, whose imports alone cost 1.5-3 s per process (scipy
only to build weights that are not cached yet). Memory is a few chunks plus the weights,
independent of the number of time steps.

Projected and curvilinear sources take the same path; only their grid is read with xarray
(CF grid mappings, auxiliary coordinates), which costs its import. A variable whose grid
dimensions are not its last two goes through :func:`hpc_workflows.regrid.regrid` on a
lazily opened dataset and :func:`hpc_workflows.write.netcdf.write_netcdf_atomic` instead;
results are identical either way.

The output is written like ``write_netcdf_atomic`` does: to ``<dst>.part`` in the same
folder, flushed and fsynced, then renamed over ``dst``; the data is put on disk while the
rest is still being written (:class:`~hpc_workflows.write.flush.WriteBehind`), so the
closing fsync only waits for the last part.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from hpc_workflows.diskspace import explain_write_failure
from hpc_workflows.netcdf_lock import NETCDF_LOCK
from hpc_workflows.netcdf_read import read_into
from hpc_workflows.regrid.errors import GridError, RegridError
from hpc_workflows.regrid.grids import SourceGrid, _is_lat, _is_lon, derive_bounds
from hpc_workflows.regrid.overlap import check_overlap
from hpc_workflows.regrid.select import (VariableInfo, data_variable_names,
                                          horizontal_auxiliaries, referenced_names)
from hpc_workflows.regrid.targets import TargetGrid, parse_target_grid
from hpc_workflows.write.cf import band_attrs, cell_methods_for_output, filter_references
from hpc_workflows.write.flush import WriteBehind

__all__ = ["regrid_file", "select_variables"]

_DROP_ATTRS = {"_FillValue", "missing_value", "scale_factor", "add_offset", "grid_mapping",
               "valid_min", "valid_max", "valid_range", "_Unsigned"}


def _attrs(var: Any) -> dict[str, Any]:
    return {k: var.getncattr(k) for k in var.ncattrs()}


def _shim(var: Any) -> SimpleNamespace:
    return SimpleNamespace(attrs=_attrs(var))


def _latlon_grid_nc(nc: Any, names: list[str], src: Path) -> SourceGrid | None:
    """The 1-D lat/lon grid shared by ``names`` as their last two dimensions, or None when it
    is not a plain lat/lon grid or some variable stores it elsewhere (regrid() then decides,
    with a clear error for variables on different grids)."""
    dims = tuple(nc[names[0]].dimensions[-2:])
    if len(dims) != 2 or any(tuple(nc[n].dimensions[-2:]) != dims for n in names):
        return None
    ydim, xdim = dims
    if ydim not in nc.variables or xdim not in nc.variables:
        return None
    yv, xv = nc[ydim], nc[xdim]
    if yv.ndim != 1 or xv.ndim != 1 or not _is_lat(ydim, _shim(yv)) or not _is_lon(xdim, _shim(xv)):
        return None
    for name, var in ((ydim, yv), (xdim, xv)):
        units = str(_attrs(var).get("units", ""))
        if units and not units.startswith("degree"):
            raise GridError(f"file {str(src)!r}, variable {names[0]!r}: coordinate {name!r} has "
                            f"units {units!r}; latitude/longitude must be in degrees")
    lat = np.asarray(yv[:], dtype=np.float64)
    lon = np.asarray(xv[:], dtype=np.float64)
    bounds = []
    for var, values, clip in ((yv, lat, (-90.0, 90.0)), (xv, lon, None)):
        bname = _attrs(var).get("bounds")
        if bname and bname in nc.variables:
            bounds.append(np.asarray(nc[bname][:], dtype=np.float64))
        else:
            bounds.append(None)
    derived = any(b is None for b in bounds)
    lat_b = bounds[0] if bounds[0] is not None else derive_bounds(lat, clip=(-90.0, 90.0))
    lon_b = bounds[1] if bounds[1] is not None else derive_bounds(lon)
    return SourceGrid("latlon", (ydim, xdim), lat, lon, lat_b, lon_b, bounds_derived=derived)


def select_variables(nc: Any, variables: list[str] | None, src: Path) -> list[str]:
    """The variables of the open netCDF4 file ``nc`` that :func:`regrid_file` regrids:
    ``variables`` (checked to exist), or those :mod:`hpc_workflows.regrid.select` picks.
    The caller holds :data:`~hpc_workflows.netcdf_lock.NETCDF_LOCK`.

    Raises
    ------
    RegridError
        Naming ``src`` when a requested variable is missing or there is nothing to regrid.
    """
    if variables is not None:
        missing = [v for v in variables if v not in nc.variables]
        if missing:
            raise RegridError(f"file {str(src)!r}: variables {missing} not found; available: "
                              f"{sorted(nc.variables)}")
        return list(variables)
    infos = _infos(nc)
    names = data_variable_names(infos, referenced_names([i.attrs for i in infos.values()]),
                                set(nc.dimensions))
    if not names:
        raise RegridError(f"file {str(src)!r}: no numeric variable with 2 or more dimensions "
                          "to regrid (cell bounds and coordinates are not data)")
    return names


def _infos(nc: Any) -> dict[str, VariableInfo]:
    return {n: VariableInfo(tuple(v.dimensions), _attrs(v), v.dtype, v.size)
            for n, v in nc.variables.items()}


def _read_block(var: Any, i0: int, i1: int, out_dtype: np.dtype,
                buffers: dict | None = None) -> np.ndarray:
    """Steps i0:i1 (first axis) unpacked to float with missing values as NaN.

    With ``buffers`` (one dict per thread), the raw values are read into a buffer kept there
    for the next chunk of the same variable, so the result may be that buffer: use it before
    the thread reads again.
    """
    raw = None
    if var.ndim > 2 and buffers is not None:
        shape = (i1 - i0,) + tuple(var.shape[1:])
        buf = buffers.get(var.name)
        if buf is None or buf.shape != shape:
            buf = buffers[var.name] = np.empty(shape, dtype=var.dtype)
        if read_into(var, (i0,) + (0,) * (var.ndim - 1), buf):
            raw = buf
    if raw is None:
        raw = var[i0:i1] if var.ndim > 2 else var[:]
    attrs = _attrs(var)
    data = np.asarray(raw)
    missing = None
    for key in ("_FillValue", "missing_value"):
        if key in attrs:
            vals = np.atleast_1d(attrs[key])
            if vals.dtype.kind == "f":
                # A NaN fill (xarray's default for floats) is already NaN and equals nothing:
                # comparing with it would be a pass over the data that finds nothing.
                vals = vals[~np.isnan(vals)]
            if vals.size:
                m = data == vals[0] if vals.size == 1 else np.isin(data, vals)
                missing = m if missing is None else (missing | m)
    data = _apply_unsigned(data, attrs.get("_Unsigned"))
    data = data.astype(out_dtype, copy=False)
    if "scale_factor" in attrs or "add_offset" in attrs:
        data = data * out_dtype.type(attrs.get("scale_factor", 1.0)) + out_dtype.type(
            attrs.get("add_offset", 0.0))
    if missing is not None and missing.any():
        # In place: data is this thread's buffer or an array made here, and a copy would
        # hold a second chunk in memory next to the kept buffer.
        np.putmask(data, missing, out_dtype.type(np.nan))
    return data


def _apply_unsigned(data: np.ndarray, flag: Any) -> np.ndarray:
    """Reinterpret integers as the NUG ``_Unsigned`` attribute says (as xarray does):
    ``"true"`` on a signed type (netCDF-3 has no unsigned bytes, so radar reflectivity in
    0..255 is stored as signed bytes), ``"false"`` on an unsigned one. Fill values were
    compared before, on the stored bits, so they stay matched."""
    if flag is None or data.dtype.kind not in "iu":
        return data
    text = str(flag).strip().lower()
    if text == "true" and data.dtype.kind == "i":
        return data.view(data.dtype.str.replace("i", "u"))
    if text == "false" and data.dtype.kind == "u":
        return data.view(data.dtype.str.replace("u", "i"))
    return data


def regrid_file(
    src: Path | str,
    dst: Path | str,
    target: TargetGrid | str | dict[str, Any],
    method: str = "conservative",
    *,
    variables: list[str] | None = None,
    min_valid_fraction: float = 0.5,
    weights_dir: Path | None = None,
    statistics: list[str] | None = None,
    bands: list[tuple[float, float]] | None = None,
    time_chunk: int = 4,
    compression_level: int = 0,
    threads: int = 2,
    final_attrs: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Path:
    """Regrid a netCDF file into a new netCDF file, streaming over the first dimension.

    Parameters are those of :func:`hpc_workflows.regrid.regrid` plus:

    src, dst
        Input and output paths (``dst`` is written atomically via ``<dst>.part``).
    time_chunk
        Steps of the leading dimension processed at once (memory ~ a few chunks).
    compression_level
        zlib level for the regridded variables (0 = none).
    threads
        Chunks in flight at once (read, compute, write); 2 lets one core compute while the
        other reads. 1 processes chunks one after another.
    final_attrs
        Given the output's global attributes once everything is written, returns them as
        they should be (e.g. with the caller's provenance stamp). Applied before the one
        closing fsync and the rename, so ``dst`` never exists without them and the file is
        not opened, written and synced a second time.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    import netCDF4

    from hpc_workflows.regrid.methods import check_method, provenance_attrs

    src, dst = Path(src), Path(dst)
    check_method(method, statistics)
    if not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction={min_valid_fraction!r} must be within [0, 1]")
    if not 0 <= compression_level <= 9:
        raise ValueError(f"compression_level={compression_level!r} must be 0..9")
    tgt = parse_target_grid(target)
    if not src.is_file():
        raise RegridError(f"input file {str(src)!r} does not exist")
    with NETCDF_LOCK:
        nc = netCDF4.Dataset(src)
    try:
        with NETCDF_LOCK:
            names = select_variables(nc, variables, src)
            grid = _latlon_grid_nc(nc, names, src)
        if grid is None:  # projected or curvilinear: xarray reads the grid, we stream
            found = _grid_with_xarray(src, variables, tgt.geodetic)
            if found is None:
                return _slow_path(src, dst, tgt, method, variables, min_valid_fraction,
                                  weights_dir, statistics, bands, compression_level,
                                  time_chunk, final_attrs)
            grid, names = found
        if method == "aggregate":
            kernel, key, outputs, band_list, aux_kernel = _aggregate_kernel(
                grid, tgt, statistics or ["mean"], bands, min_valid_fraction, src, names[0])
        else:
            kernel, key, outputs, band_list, aux_kernel = _weights_kernel(
                grid, tgt, method, weights_dir, min_valid_fraction, src, names[0])
        with NETCDF_LOCK:
            # Horizontal fields the data refer to (surface_altitude in formula_terms):
            # regridded once, so the references stay resolvable.
            aux = horizontal_auxiliaries(_infos(nc), names, grid.dims)
        part = dst.with_name(dst.name + ".part")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            with NETCDF_LOCK:
                out = netCDF4.Dataset(part, "w", format="NETCDF4")
            # Flush an eighth of the output at a time (at least 2 MiB): the closing fsync then
            # waits for at most that much, small outputs included. For 62 MB (240 steps at
            # 1 degree) the closing wait was 0.031 s with quarters, 0.013 s with eighths.
            every = max(2 << 20, _output_bytes(nc, names, tgt, outputs, band_list) // 8)
            with WriteBehind(part, every=every) as flusher:
                try:
                    _write_stream(nc, out, names, grid, tgt, kernel, outputs, band_list,
                                  time_chunk, compression_level, threads, flusher,
                                  aux, aux_kernel)
                    with NETCDF_LOCK:
                        out.setncatts(provenance_attrs(method, key, tgt, grid,
                                                       min_valid_fraction, str(src)))
                        if final_attrs is not None:
                            current = {k: out.getncattr(k) for k in out.ncattrs()}
                            new = final_attrs(dict(current))
                            out.setncatts({k: v for k, v in new.items() if current.get(k) != v})
                        out.sync()
                finally:
                    with NETCDF_LOCK:
                        out.close()
                flusher.finish()  # fsync: only the tail is left to flush
            os.replace(part, dst)
        except Exception as exc:
            # netCDF-C reports a full disk as EACCES or an HDF error: name the real cause
            # (hpc_workflows.diskspace), looking before the partial file is removed.
            full = explain_write_failure(exc, part, None, str(dst))
            if full is not None:
                raise full from exc
            raise
        finally:
            part.unlink(missing_ok=True)
    finally:
        with NETCDF_LOCK:
            nc.close()
    return dst


# An "outputs" function maps (input name, input attrs) to the variables written for it:
# (output name, banded, attrs, float32, take) where take(result) selects that variable's
# part of the kernel's result for a chunk of shape (m, ...).
_Output = tuple[str, bool, dict, bool, Callable[[np.ndarray], np.ndarray]]


def _weights_kernel(grid, tgt, method, weights_dir, min_valid_fraction, src, first):
    from hpc_workflows.regrid.apply import apply_weights_numpy
    from hpc_workflows.regrid.methods import build_weights

    w = build_weights(grid, tgt, method, weights_dir)
    check_overlap(grid, tgt, method, bool(np.any(w.coverage() > 0)),
                  f"file {str(src)!r}, variable {first!r}")

    def kernel(block: np.ndarray) -> np.ndarray:
        return apply_weights_numpy(block, w, min_valid_fraction)

    def outputs(name: str, attrs: dict) -> list[_Output]:
        attrs = dict(attrs)
        if method == "conservative":
            attrs["cell_methods"] = f"{attrs.get('cell_methods', '')} area: mean".strip()
        return [(name, False, attrs, False, lambda r: r)]

    return kernel, w.key, outputs, [], kernel


def _aggregate_kernel(grid, tgt, statistics, bands, min_valid_fraction, src, first):
    from hpc_workflows.regrid.aggregate import (AggregationPlan, aggregate_index,
                                                aggregate_numpy, check_request, output_specs)
    from hpc_workflows.regrid.weights import weights_key

    band_list = check_request(statistics, bands, min_valid_fraction)
    index = aggregate_index(grid, tgt)
    check_overlap(grid, tgt, "aggregate", bool(np.any(index >= 0)),
                  f"file {str(src)!r}, variable {first!r}")
    plan = AggregationPlan(index, tgt.shape[0] * tgt.shape[1])
    shape = tgt.shape

    def kernel(block: np.ndarray) -> np.ndarray:
        return aggregate_numpy(block, plan, statistics, band_list, min_valid_fraction)

    def outputs(name: str, attrs: dict) -> list[_Output]:
        res = []
        for spec in output_specs(name, attrs, statistics, band_list):
            def take(r: np.ndarray, spec=spec) -> np.ndarray:
                part = r[..., spec.start:spec.stop, :]
                part = part.reshape(part.shape[:-1] + shape)
                return part if spec.banded else part[..., 0, :, :]
            res.append((spec.name, spec.banded, spec.attrs, spec.float32, take))
        return res

    def aux_kernel(block: np.ndarray) -> np.ndarray:
        mean = aggregate_numpy(block, plan, ["mean"], [], min_valid_fraction)
        return mean[..., 0, :].reshape(block.shape[:-2] + shape)

    key = weights_key(grid.grid_hash(), tgt.grid_hash(), "aggregate")
    return kernel, key, outputs, band_list, aux_kernel


def _copy_var(nc: Any, out: Any, name: str) -> None:
    var = nc[name]
    attrs = _attrs(var)
    fill = attrs.pop("_FillValue", None)
    o = out.createVariable(name, var.dtype, var.dimensions, fill_value=fill)
    o.setncatts(attrs)
    var.set_auto_maskandscale(False)
    o.set_auto_maskandscale(False)
    if var.ndim == 0:
        o.assignValue(var.getValue())
    else:
        o[:] = var[:]


def _write_stream(nc, out, names, grid, tgt, kernel, outputs, band_list, time_chunk,
                  compression_level, threads, flusher: WriteBehind, aux=(),
                  aux_kernel=None) -> None:
    with NETCDF_LOCK:
        writers, ins, statics = _define_outputs(nc, out, names, grid, tgt, outputs, band_list,
                                                time_chunk, compression_level, aux)
        # Horizontal auxiliary fields have no time: once, before the chunk loop.
        for var, dtype, o in statics:
            o[:] = aux_kernel(_read_block(var, 0, 1, dtype))
    nsteps = ins[0][0].shape[0] if ins[0][0].ndim > 2 else 1
    starts = list(range(0, nsteps, time_chunk)) if ins[0][0].ndim > 2 else [0]

    # Each thread reads into buffers of its own, reused chunk after chunk: it computes on a
    # chunk and writes the result before it reads the next one (see _run_chunks).
    local = threading.local()

    def read(i0: int) -> list[np.ndarray]:
        i1 = min(i0 + time_chunk, nsteps)
        buffers = local.__dict__.setdefault("buffers", {})
        return [_read_block(var, i0, i1, dtype, buffers) for var, dtype in ins]

    def write(i0: int, results: list[np.ndarray]) -> None:
        _write_blocks(writers, i0, min(i0 + time_chunk, nsteps), results)
        flusher.wrote(sum(r.nbytes for r in results))

    _run_chunks(starts, read, lambda blocks: [kernel(b) for b in blocks], write, threads)


def _output_bytes(nc, names, tgt, outputs, band_list) -> int:
    """Bytes of regridded data the output will hold (an estimate for the flush interval)."""
    total = 0
    for name in names:
        var = nc[name]
        steps = int(np.prod(var.shape[:-2])) if var.ndim > 2 else 1
        packed = any(k in var.ncattrs() for k in ("scale_factor", "add_offset"))
        native = np.dtype(var.dtype).itemsize if np.issubdtype(var.dtype, np.floating) and \
            not packed else 8
        for _, banded, _, float32, _ in outputs(name, {}):
            itemsize = 4 if float32 else native
            total += steps * (len(band_list) if banded else 1) * tgt.lat.size * tgt.lon.size \
                * itemsize
    return total


def _define_outputs(nc, out, names, grid, tgt, outputs, band_list, time_chunk,
                    compression_level, aux=()) -> tuple[list, list, list]:
    """Copy the untouched variables and create the regridded ones; returns what the chunk
    loop needs: per input, its (output variable, take) pairs, and (input variable, dtype);
    and (input, dtype, output) of the horizontal auxiliary fields, regridded once."""
    spatial = set(grid.dims)
    out.setncatts({k: v for k, v in _attrs(nc).items()})
    for dname, dim in nc.dimensions.items():
        if dname not in spatial and dname not in ("lat", "lon", "bnds"):
            out.createDimension(dname, None if dim.isunlimited() else len(dim))
    out.createDimension("lat", tgt.lat.size)
    out.createDimension("lon", tgt.lon.size)
    if "bnds" not in out.dimensions:
        out.createDimension("bnds", 2)
    gm = {str(_attrs(nc[n]).get("grid_mapping", "")).split(":")[0] for n in names}
    bounds_of_spatial = {str(_attrs(nc[d]).get("bounds")) for d in grid.dims
                         if d in nc.variables}
    for vname, var in nc.variables.items():
        if (vname in names or vname in gm or vname in bounds_of_spatial
                or spatial & set(var.dimensions) or vname in ("lat", "lon", "lat_bnds", "lon_bnds")):
            continue
        if "bnds" in var.dimensions and len(nc.dimensions["bnds"]) != 2:
            continue
        _copy_var(nc, out, vname)
    for name, values, attrs in (
        ("lat", tgt.lat, {"standard_name": "latitude", "long_name": "latitude",
                          "units": "degrees_north", "axis": "Y", "bounds": "lat_bnds"}),
        ("lon", tgt.lon, {"standard_name": "longitude", "long_name": "longitude",
                          "units": "degrees_east", "axis": "X", "bounds": "lon_bnds"}),
    ):
        v = out.createVariable(name, "f8", (name,))
        v.setncatts(attrs)
        v[:] = values
        b = out.createVariable(f"{name}_bnds", "f8", (name, "bnds"))
        b[:] = tgt.lat_bnds if name == "lat" else tgt.lon_bnds
    if band_list:
        out.createDimension("band", len(band_list))
        for bname, values in (("band_lower", [b[0] for b in band_list]),
                              ("band_upper", [b[1] for b in band_list])):
            bv = out.createVariable(bname, "f8", ("band",))
            bv.setncatts(band_attrs(bname, _attrs(nc[names[0]]).get("units")))
            bv[:] = np.asarray(values, dtype=np.float64)
    writers: list[list[tuple[Any, Callable]]] = []  # per input: (output variable, take)
    ins = []
    for name in names:
        var = nc[name]
        var.set_auto_maskandscale(False)
        dtype = _float_dtype(var)
        lead = var.dimensions[:-2]
        attrs = {k: v for k, v in _attrs(var).items() if k not in _DROP_ATTRS}
        targets = []
        for out_name, banded, out_attrs, float32, take in outputs(name, attrs):
            if "coordinates" in attrs:  # counts and fractions keep time, height, ... too
                out_attrs = {"coordinates": attrs["coordinates"], **out_attrs}
            odt = np.dtype(np.float32) if float32 else dtype
            dims = lead + (("band",) if banded else ()) + ("lat", "lon")
            chunks = [1] * len(lead) + ([len(band_list)] if banded else []) + list(tgt.shape)
            if lead:
                chunks[0] = min(time_chunk, max(1, len(nc.dimensions[lead[0]])))
            o = out.createVariable(out_name, odt, dims, fill_value=odt.type(np.nan),
                                   zlib=compression_level > 0,
                                   complevel=max(compression_level, 1),
                                   shuffle=compression_level > 0, chunksizes=chunks)
            # Chunks are written once, in order: a small cache keeps memory flat (netCDF-C's
            # default 64 MiB per-variable cache otherwise fills with every chunk written).
            o.set_var_chunk_cache(size=max(2 * int(np.prod(chunks)) * odt.itemsize, 1 << 20),
                                  nelems=101, preemption=1.0)
            if banded:
                coords = f"{out_attrs.get('coordinates', '')} band_lower band_upper"
                out_attrs = dict(out_attrs, coordinates=coords.strip())
            o.setncatts(out_attrs)
            o.set_auto_maskandscale(False)
            targets.append((o, take))
        writers.append(targets)
        ins.append((var, dtype))
    statics = []
    for name in aux:
        var = nc[name]
        var.set_auto_maskandscale(False)
        dtype = _float_dtype(var)
        o = out.createVariable(name, dtype, ("lat", "lon"), fill_value=dtype.type(np.nan),
                               zlib=compression_level > 0, complevel=max(compression_level, 1))
        o.setncatts({k: v for k, v in _attrs(var).items() if k not in _DROP_ATTRS})
        o.set_auto_maskandscale(False)
        statics.append((var, dtype, o))
    _resolve_references(out, {str(d): "lat" if d == grid.dims[0] else "lon" for d in grid.dims},
                        {o.name for targets in writers for o, _ in targets})
    return writers, ins, statics


def _float_dtype(var: Any) -> np.dtype:
    """Float type the values of ``var`` are computed in: its own, or float64 when packed or
    integer."""
    packed = any(k in var.ncattrs() for k in ("scale_factor", "add_offset"))
    return np.dtype(var.dtype) if np.issubdtype(var.dtype, np.floating) and not packed \
        else np.dtype(np.float64)


def _resolve_references(out: Any, rename: dict[str, str], regridded: set[str]) -> None:
    """Make every variable's references name variables of ``out`` (see
    :mod:`hpc_workflows.write.cf`) and the regridded ones' cell_methods its dimensions."""
    present = set(out.variables)
    scalars = {n for n, v in out.variables.items() if v.ndim == 0}
    standard = {str(v.getncattr("standard_name")) for v in out.variables.values()
                if "standard_name" in v.ncattrs()}
    for name, var in out.variables.items():
        old = _attrs(var)
        new = filter_references(old, present)
        if name in regridded and "cell_methods" in new:
            new["cell_methods"] = cell_methods_for_output(
                str(new["cell_methods"]), rename, set(var.dimensions) | scalars | standard)
            if not new["cell_methods"]:
                del new["cell_methods"]
        for key in set(old) - set(new):
            var.delncattr(key)
        # Only string attributes (references, cell_methods) are ever rewritten.
        changed = {k: v for k, v in new.items()
                   if k not in old or (isinstance(v, str) and v != old[k])}
        if changed:
            var.setncatts(changed)


def _run_chunks(starts: list[int], read: Callable, compute: Callable, write: Callable,
                threads: int) -> None:
    """read -> compute -> write every chunk, ``threads`` chunks at a time.

    netCDF-C and HDF5 are not thread-safe, so reads and writes hold
    :data:`~hpc_workflows.netcdf_lock.NETCDF_LOCK`; netCDF4 releases the GIL inside them,
    and the kernels (BLAS, numpy) release it too. Each thread
    computes on the chunk it has just read, while it is still in the CPU cache, and the
    other thread's I/O proceeds meanwhile. Measured on 2 cores (0.25 -> 1 degree, 240 steps):
    this overlap took the chunk loop from read + compute + write run one after another to
    close to the read + write time alone. Chunks may be written out of order; each is
    written exactly once. The first error stops the remaining chunks and is raised.
    """
    io_lock = NETCDF_LOCK
    if threads <= 1 or len(starts) == 1:
        for i0 in starts:
            with io_lock:
                blocks = read(i0)
            results = compute(blocks)
            with io_lock:
                write(i0, results)
        return
    stop = threading.Event()

    def one(i0: int) -> None:
        if stop.is_set():
            return
        try:
            with io_lock:
                blocks = read(i0)
            results = compute(blocks)
            del blocks
            with io_lock:
                write(i0, results)
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="regrid") as pool:
        futures = [pool.submit(one, i0) for i0 in starts]
        try:
            for future in futures:
                future.result()
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            raise


def _write_blocks(writers, i0, i1, results) -> None:
    for targets, r in zip(writers, results):
        for o, take in targets:
            part = take(r)
            if o.ndim > 2 + (1 if "band" in o.dimensions else 0):
                o[i0:i1] = part
            else:
                o[:] = part


def _grid_with_xarray(src: Path, variables: list[str] | None, geodetic: str
                      ) -> tuple[SourceGrid, list[str]] | None:
    """(grid, variables) of a projected or curvilinear source, read with xarray, which
    knows CF grid mappings and auxiliary coordinates; None when a variable does not end in
    the grid's (y, x) dimensions (the chunk loop slices the leading ones).

    Only the grid's coordinates are read. xarray's netCDF4 backend has a lock of its own, so
    the whole read holds ours too.
    """
    import xarray as xr

    from hpc_workflows.regrid.api import data_variables
    from hpc_workflows.regrid.grids import read_source_grid

    with NETCDF_LOCK, xr.open_dataset(src, decode_times=False, mask_and_scale=False) as ds:
        names = data_variables(ds, variables)
        grid = read_source_grid(ds, names[0], geodetic=geodetic)
        if any(tuple(map(str, ds[n].dims[-2:])) != tuple(grid.dims) for n in names):
            return None
    return grid, names


def _slow_path(src, dst, tgt, method, variables, min_valid_fraction, weights_dir, statistics,
               bands, compression_level, time_chunk, final_attrs=None) -> Path:
    import xarray as xr

    from hpc_workflows.regrid.api import data_variables, regrid
    from hpc_workflows.write.netcdf import write_netcdf_atomic

    with xr.open_dataset(src, chunks={}) as ds:
        # chunks={} follows the file's chunking, and an unchunked (contiguous) variable would
        # be one chunk of every step: cut the non-grid dimensions into time_chunk pieces.
        grid_dims = ds[data_variables(ds, variables)[0]].dims[-2:]
        ds = ds.chunk({d: time_chunk for d in ds.dims if d not in grid_dims})
        out = regrid(ds, tgt, method, variables=variables, min_valid_fraction=min_valid_fraction,
                     weights_dir=weights_dir, statistics=statistics, bands=bands)
        if final_attrs is not None:
            out.attrs = final_attrs(dict(out.attrs))
        return write_netcdf_atomic(out, Path(dst), compression_level=compression_level)
