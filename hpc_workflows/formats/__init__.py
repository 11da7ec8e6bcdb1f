"""Input formats: recognise archive files by content and convert them to CF netCDF.

One module per format over a small shared base (:mod:`~hpc_workflows.formats.base`):
:mod:`~hpc_workflows.formats.netcdf`, :mod:`~hpc_workflows.formats.nimrod`,
:mod:`~hpc_workflows.formats.pp` (PP and fieldsfiles) and :mod:`~hpc_workflows.formats.grib`.
Importing this package is cheap; iris and ecCodes (the ``formats`` extra) are imported only
when a file needs them. See docs/formats.md.
"""

from hpc_workflows.formats.api import FORMATS, check_readable, detect, reader, to_netcdf
from hpc_workflows.formats.base import FormatError, MissingReaderError

__all__ = ["FORMATS", "FormatError", "MissingReaderError", "check_readable", "detect", "reader", "to_netcdf"]
