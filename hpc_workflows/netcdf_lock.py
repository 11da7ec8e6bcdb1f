"""One lock for every netCDF-C/HDF5 call this package makes.

netCDF-C and the HDF5 builds that the netCDF4 wheels ship are not thread-safe, not even for
different files, and netCDF4-python releases the GIL inside them: two threads in one
process calling them at once crash the process or fail with "NetCDF: HDF error". xarray
serialises its own calls with its own lock. Everything here that calls netCDF4 directly
(the streaming regridder, the weights cache, attribute updates) holds :data:`NETCDF_LOCK`
around each call, and so does every xarray write we start
(:func:`hpc_workflows.write.netcdf.write_netcdf_atomic`), so none of them overlap.

It is re-entrant. Do not take it inside a dask task: a thread holding it while dask computes
a write would wait for that task for ever.
"""

from __future__ import annotations

import threading

__all__ = ["NETCDF_LOCK"]

NETCDF_LOCK = threading.RLock()
