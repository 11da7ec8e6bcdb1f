"""Writing outputs: CF-compliant netCDF, atomically, with provenance.

Attributes are resolved lazily so that :mod:`hpc_workflows.write.flush` (used by the
netCDF4-only streaming regridder) can be imported without importing xarray.
"""

from __future__ import annotations

from hpc_workflows.lazy_exports import lazy_exports

_EXPORTS = {
    "default_encoding": "hpc_workflows.write.netcdf",
    "write_netcdf_atomic": "hpc_workflows.write.netcdf",
    "add_provenance": "hpc_workflows.write.provenance",
    "provenance_attrs": "hpc_workflows.write.provenance",
    "WriteBehind": "hpc_workflows.write.flush",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
