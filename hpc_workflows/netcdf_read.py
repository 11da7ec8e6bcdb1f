"""Read a block of a netCDF variable into a buffer the caller owns.

netCDF4-python allocates a new array for every read. For the streaming regridder that is a
fresh 16 MiB array per chunk of a 0.25 degree field, and the kernel has to fault in and zero
every page of it before netCDF-C copies the data in (glibc hands big blocks that a thread
frees back to the OS). Measured on the development machine (2 vCPUs, 240 steps of
721 x 1440 float32, page cache warm): reading into one reused buffer per thread took the
reads of the chunk loop from 0.33-0.36 s to 0.26-0.31 s.

:func:`read_into` calls ``nc_get_vara`` of the netCDF-C library that netCDF4-python itself
loaded (found in this process's memory map, so it is the same library instance and the same
open-file table), with the ids netCDF4-python holds for the file and variable. It refuses,
returning False so the caller falls back to ``var[...]``, whenever it cannot be sure that the
bytes it writes are the bytes ``var[...]`` would return with auto mask and scale off: a
non-numeric or non-native-endian type, a buffer of the wrong shape, dtype or layout, or a
library it cannot find or that does not recognise the ids. The caller must hold
:data:`~hpc_workflows.netcdf_lock.NETCDF_LOCK`, as for any netCDF call.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import numpy as np

__all__ = ["read_into"]

_SIZES = ctypes.c_size_t * 32  # NC_MAX_VAR_DIMS is 1024; 32 is plenty for gridded data
_NAME_BYTES = 257  # NC_MAX_NAME + 1
_UNSET: Any = object()
_lib: Any = _UNSET


def _netcdf_library() -> Any:
    """The libnetcdf that netCDF4-python uses, or None (cached)."""
    global _lib
    if _lib is not _UNSET:
        return _lib
    _lib = None
    import netCDF4

    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "/libnetcdf" in line}
    except OSError:
        return None
    for path in sorted(p for p in paths if ".so" in p):
        try:
            lib = ctypes.CDLL(path)  # already loaded: dlopen returns the same instance
            lib.nc_inq_libvers.restype = ctypes.c_char_p
            version = lib.nc_inq_libvers().decode(errors="replace")
        except (OSError, AttributeError):
            continue
        if not version.startswith(str(netCDF4.__netcdf4libversion__).split()[0]):
            continue
        lib.nc_get_vara.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t),
                                    ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
        lib.nc_inq_varndims.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.nc_inq_varname.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
        lib.nc_strerror.restype = ctypes.c_char_p
        _lib = lib
        break
    return _lib


def read_into(var: Any, start: tuple[int, ...], out: np.ndarray) -> bool:
    """Read ``var[start[0]:start[0]+out.shape[0], ...]`` into ``out``; False if not possible.

    Parameters
    ----------
    var
        An open ``netCDF4.Variable`` with auto mask and scale switched off.
    start
        Index of the block's first element along every dimension of ``var``.
    out
        C-contiguous array of ``var.dtype`` (native byte order) with one entry per
        dimension of ``var``: the block's shape.

    Returns
    -------
    bool
        True when ``out`` now holds the block; False when nothing was read (use ``var[...]``).

    Raises
    ------
    OSError
        When netCDF-C reports an error for a read it accepted (e.g. an HDF error).
    """
    dtype = np.dtype(var.dtype) if isinstance(var.dtype, np.dtype) else None
    if (dtype is None or dtype.kind not in "fiu" or not dtype.isnative or out.dtype != dtype
            or not out.flags.c_contiguous or not out.flags.writeable
            or out.ndim != var.ndim or len(start) != var.ndim or var.ndim > len(_SIZES())):
        return False
    shape = var.shape
    if any(s < 0 or s + n > dim for s, n, dim in zip(start, out.shape, shape)):
        return False
    lib = _netcdf_library()
    if lib is None:
        return False
    try:  # netCDF4-python's own ids: private attributes, so a release may rename them
        group = var.group()
        ncid, varid = int(group._grpid), int(var._varid)
        root = group
        while root.parent is not None:
            root = root.parent
        is_open = bool(root.isopen())
    except (AttributeError, TypeError, ValueError):
        return False
    # A closed file's id may already belong to a file opened since: never use it.
    if not is_open:
        return False
    # The ids must name this very variable in the library found: same rank, same name.
    ndims, name = ctypes.c_int(-1), ctypes.create_string_buffer(_NAME_BYTES)
    if (lib.nc_inq_varndims(ncid, varid, ctypes.byref(ndims)) != 0 or ndims.value != var.ndim
            or lib.nc_inq_varname(ncid, varid, name) != 0
            or name.value.decode(errors="replace") != var.name):
        return False
    if out.size == 0:
        return True
    rc = lib.nc_get_vara(ncid, varid, _SIZES(*start), _SIZES(*out.shape), out.ctypes.data)
    if rc != 0:
        raise OSError(f"netCDF error {rc} reading {var.name!r}: "
                      f"{lib.nc_strerror(rc).decode(errors='replace')}")
    return True
