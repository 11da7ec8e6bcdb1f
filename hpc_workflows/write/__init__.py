"""Writing outputs: CF-compliant netCDF, atomically, with provenance.

Attributes are resolved lazily so that :mod:`hpc_workflows.write.flush` (used by the
netCDF4-only streaming regridder) can be imported without importing xarray.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "default_encoding": "hpc_workflows.write.netcdf",
    "write_netcdf_atomic": "hpc_workflows.write.netcdf",
    "add_provenance": "hpc_workflows.write.provenance",
    "provenance_attrs": "hpc_workflows.write.provenance",
    "WriteBehind": "hpc_workflows.write.flush",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hpc_workflows.write' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
