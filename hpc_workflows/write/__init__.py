"""Writing outputs: CF-compliant netCDF, atomically, with provenance."""

from hpc_workflows.write.netcdf import default_encoding, write_netcdf_atomic
from hpc_workflows.write.provenance import add_provenance, provenance_attrs

__all__ = ["add_provenance", "default_encoding", "provenance_attrs", "write_netcdf_atomic"]
