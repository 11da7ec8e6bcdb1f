"""netCDF (classic, 64-bit offset, CDF-5 and netCDF-4/HDF5): recognise it and check it is whole.

netCDF-C reads past the end of a truncated classic file as if the missing bytes were zeros
(or fill values), without an error: a recall that stopped half way would be regridded as a
field of zeros. :func:`classic_expected_size` reads the header (the layout is the published
"netCDF classic format specification") and says how long the file must be. scipy's
``netcdf_file`` reads the same header but knows no CDF-5 and turns truncation into a numpy
buffer error; the header walk is short enough to own.

netCDF-4 files are HDF5, whose library does notice a truncated file when it is opened, so
for them opening the file is the check.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hpc_workflows.formats.base import FormatError, FormatReader

__all__ = ["NetCDFReader", "classic_expected_size"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CLASSIC = {b"CDF\x01": 1, b"CDF\x02": 2, b"CDF\x05": 5}
# nc_type -> bytes per value: byte, char, short, int, float, double, ubyte, ushort, uint,
# int64, uint64 (CDF-5 adds the last five).
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
_NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C


class _Header:
    """A cursor over a classic header; every read fails cleanly at the end of the data."""

    def __init__(self, data: bytes, version: int) -> None:
        self.data, self.pos = data, 4
        # CDF-5 widens counts and lengths to 64 bits; CDF-2 widens only the data offsets.
        self.count_fmt = ">q" if version == 5 else ">i"
        self.offset_fmt = ">i" if version == 1 else ">q"

    def _unpack(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise EOFError
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def tag(self) -> int:
        return self._unpack(">i")

    def count(self) -> int:
        return self._unpack(self.count_fmt)

    def offset(self) -> int:
        return self._unpack(self.offset_fmt)

    def skip(self, nbytes: int) -> None:
        self.pos += (nbytes + 3) // 4 * 4  # every name and value block is padded to 4 bytes
        if self.pos > len(self.data):
            raise EOFError

    def name(self) -> None:
        self.skip(self.count())

    def attributes(self) -> None:
        tag, n = self.tag(), self.count()
        if tag not in (0, _NC_ATTRIBUTE):
            raise ValueError(f"bad attribute list tag {tag}")
        for _ in range(n):
            self.name()
            nc_type = self.tag()
            self.skip(self.count() * _TYPE_SIZE.get(nc_type, 1))


def classic_expected_size(path: Path) -> int | None:
    """The size in bytes a classic-format netCDF file must have, from its header.

    Parameters
    ----------
    path : Path
        A netCDF-3 (CDF-1, CDF-2 or CDF-5) file.

    Returns
    -------
    int or None
        The offset just past the last byte of data the header declares; None when the
        header does not say (a file still being streamed, numrecs = -1).

    Raises
    ------
    FormatError
        If the header itself is cut short or malformed (naming the file).
    """
    with open(path, "rb") as fh:
        magic = fh.read(4)
        version = _CLASSIC.get(magic)
        if version is None:
            raise FormatError(f"{path}: not a classic netCDF file")
        # Headers are small, but their size is not known before walking them; read a
        # generous block and read more if the walk runs off its end.
        chunk = 1 << 16
        data = magic + fh.read(chunk)
        while True:
            try:
                return _walk(data, version)
            except EOFError:
                more = fh.read(len(data))
                if not more:
                    raise FormatError(
                        f"{path}: netCDF header is cut short (file is {len(data)} bytes): "
                        "the file is truncated; fetch it again"
                    ) from None
                data += more
            except (ValueError, struct.error) as exc:
                raise FormatError(f"{path}: malformed netCDF header ({exc})") from None


def _walk(data: bytes, version: int) -> int | None:
    h = _Header(data, version)
    numrecs = h.count()  # -1 while a writer is still streaming records
    tag, ndims = h.tag(), h.count()
    if tag not in (0, _NC_DIMENSION):
        raise ValueError(f"bad dimension list tag {tag}")
    dims: list[int] = []
    for _ in range(ndims):
        h.name()
        dims.append(h.count())  # 0 marks the record (unlimited) dimension
    h.attributes()
    tag, nvars = h.tag(), h.count()
    if tag not in (0, _NC_VARIABLE):
        raise ValueError(f"bad variable list tag {tag}")
    fixed_end, record_vars = 0, []
    for _ in range(nvars):
        h.name()
        dimids = [h.count() for _ in range(h.count())]
        h.attributes()
        nc_type, vsize, begin = h.tag(), h.count(), h.offset()
        lengths = [dims[d] for d in dimids]
        is_record = bool(lengths) and lengths[0] == 0
        # The bytes actually stored: vsize is rounded up to 4, and the last variable's
        # padding need not be written.
        nbytes = _TYPE_SIZE.get(nc_type, 1)
        for n in lengths[1:] if is_record else lengths:
            nbytes *= n
        if is_record:
            record_vars.append((begin, vsize, nbytes))
        else:
            fixed_end = max(fixed_end, begin + nbytes)
    if not record_vars:
        return fixed_end
    if numrecs < 0:
        return None
    if numrecs == 0:
        return fixed_end
    # One record variable alone is stored without padding between records.
    recsize = record_vars[0][2] if len(record_vars) == 1 else sum(v[1] for v in record_vars)
    record_end = max(begin + (numrecs - 1) * recsize + nbytes for begin, _, nbytes in record_vars)
    return max(fixed_end, record_end)


class NetCDFReader(FormatReader):
    """netCDF classic (CDF-1/2/5) and netCDF-4 (HDF5); read by xarray, no extra needed."""

    name = "netcdf"
    label = "netCDF"

    def sniff(self, head: bytes) -> bool:
        return head[:4] in _CLASSIC or head.startswith(_HDF5_MAGIC)

    def check(self, path: Path) -> None:
        """Refuse a classic file shorter than its header says, or an HDF5 file that will not open."""
        with open(path, "rb") as fh:
            magic = fh.read(8)
        if magic[:4] in _CLASSIC:
            expected = classic_expected_size(path)
            actual = path.stat().st_size
            if expected is not None and actual < expected:
                raise FormatError(
                    f"{path}: netCDF file is truncated: its header describes {expected} bytes "
                    f"but the file has {actual}; fetch it again"
                )
            return
        import netCDF4

        from hpc_workflows.netcdf_lock import NETCDF_LOCK

        try:
            with NETCDF_LOCK, netCDF4.Dataset(path):
                pass
        except OSError as exc:
            raise FormatError(f"{path}: netCDF-4 file cannot be opened ({exc}): "
                              "it may be truncated; fetch it again") from None
