"""Atomic netCDF writing.

Every netCDF the package produces goes through :func:`write_netcdf_atomic`: the file is
written to ``<name>.part`` in the destination folder, flushed to disk, then renamed over the
final name. A crash, walltime kill or full disk therefore never leaves a truncated file under
a name that a re-run would take as complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hpc_workflows.diskspace import check_space, explain_write_failure
from hpc_workflows.netcdf_lock import NETCDF_LOCK

__all__ = ["default_encoding", "write_netcdf_atomic"]


def default_encoding(ds: xr.Dataset, compression_level: int = 4) -> dict[str, dict[str, Any]]:
    """Compression settings for every floating-point data variable.

    Parameters
    ----------
    ds
        Dataset to be written.
    compression_level
        zlib level 0 (off) to 9. Level 1-4 gives most of the size reduction for gridded
        fields at a fraction of the cost of 9.

    Returns
    -------
    dict
        An ``encoding`` mapping for :meth:`xarray.Dataset.to_netcdf`.
    """
    if not 0 <= compression_level <= 9:
        raise ValueError(
            f"compression_level={compression_level!r} is out of range: use 0 (no compression) to 9"
        )
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        if not np.issubdtype(var.dtype, np.number):
            continue
        enc: dict[str, Any] = {}
        if compression_level > 0:
            enc.update(zlib=True, complevel=compression_level, shuffle=True)
        if np.issubdtype(var.dtype, np.floating) and "_FillValue" not in var.encoding:
            # NaN as the fill value keeps "missing" missing for every CF reader.
            enc["_FillValue"] = np.nan if var.dtype.kind == "f" else None
        encoding[str(name)] = enc
    # Coordinates (time included: xarray would give a float time a NaN _FillValue) and
    # bounds must not carry a _FillValue (CF 2.5.1, 7.1).
    bounds = {str(v.attrs["bounds"]) for v in ds.variables.values() if "bounds" in v.attrs}
    for name, var in ds.variables.items():
        is_bounds = str(name) in bounds or str(name).endswith(("_bnds", "_bounds"))
        if name in ds.coords or is_bounds:
            entry = encoding.setdefault(str(name), {})
            entry.update({**_stored_as(var), **entry, "_FillValue": None})
    return encoding


def _stored_as(var: xr.Variable | xr.DataArray) -> dict[str, Any]:
    """How a coordinate or bounds variable was stored (type, time units and calendar): an
    entry of ``to_netcdf``'s ``encoding`` replaces the variable's own, and without these
    xarray would write e.g. ``time_bnds`` as int64, which CF 1.8 does not allow."""
    return {k: v for k, v in var.encoding.items() if k in ("dtype", "units", "calendar")}


def _load_time_variables(ds: xr.Dataset) -> xr.Dataset:
    """Load dask-backed date variables (e.g. ``time_bnds``): they are small, and xarray
    cannot encode lazy datetimes without explicit units."""
    lazy = [
        name for name, var in ds.variables.items()
        if var.chunks is not None and (var.dtype.kind in "mM" or var.dtype == object)
    ]
    if not lazy:
        return ds
    ds = ds.copy()
    for name in lazy:
        ds[name] = ds[name].load()
    return ds


def write_netcdf_atomic(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    compression_level: int = 4,
    encoding: dict[str, dict[str, Any]] | None = None,
    unlimited_dims: tuple[str, ...] = (),
) -> Path:
    """Write ``ds`` to ``path`` so that ``path`` is either absent or complete.

    Dask-backed variables are streamed chunk by chunk, so memory stays bounded by the
    chunk size, not the dataset length.

    Parameters
    ----------
    ds
        Dataset to write (numpy- or dask-backed).
    path
        Final file name. Its folder is created if missing.
    compression_level
        zlib level for floating-point data variables (0 turns compression off).
    encoding
        Per-variable overrides, merged over :func:`default_encoding`.
    unlimited_dims
        Dimensions to make UNLIMITED. Default none: fixed-size dimensions are read
        correctly by every tool (CDO 2.1 misreads some files with an unlimited time).

    Returns
    -------
    pathlib.Path
        The final path.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    enc = default_encoding(ds, compression_level)
    for name, overrides in (encoding or {}).items():
        enc.setdefault(name, {}).update(overrides)
    ds = _load_time_variables(ds)
    # Compressed output is smaller than ds.nbytes; 1/20 is a floor real data rarely beats.
    needed = int(ds.nbytes) if compression_level == 0 else int(ds.nbytes) // 20
    check_space(final.parent, needed, str(final))
    try:
        with NETCDF_LOCK:  # xarray locks only its own calls (see hpc_workflows.netcdf_lock)
            ds.to_netcdf(part, format="NETCDF4", engine="netcdf4", encoding=enc,
                         unlimited_dims=list(unlimited_dims))
        # fsync before rename: otherwise a node crash can leave a renamed but empty file.
        with open(part, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(part, final)
    except BaseException as exc:
        # netCDF-C reports a full disk as "Permission denied" or an HDF error: look at the
        # space before the partial file is removed (that frees it again).
        full = explain_write_failure(exc, part, needed, str(final)) if isinstance(exc, Exception) else None
        part.unlink(missing_ok=True)
        if full is not None:
            raise full from exc
        raise
    return final
