"""UM PP files and fieldsfiles: Met Office Unified Model output, read with iris.

PP is a Fortran sequential file of 64-word headers and data records; a fieldsfile is a
direct-access file with a fixed-length header whose first word says its version. The magic
numbers are iris's own (``iris.fileformats.FORMAT_AGENT``), so a file we call PP is one iris
will read as PP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpc_workflows.formats.base import FormatReader, check_fortran_records

__all__ = ["PPReader"]

_PP_BIG = (256).to_bytes(4, "big")  # first record: 64 four-byte header words
_PP_LITTLE = (256).to_bytes(4, "little")
# Fieldsfiles: 64-bit words 15 (pre 3.1), 20 (post 5.2), -32768 (ancillary), and the same as
# 32-bit words for files converted with ``ieee -32``.
_FF_64 = {v.to_bytes(8, "big", signed=True) for v in (15, 20, -32768)}
_FF_32 = {v.to_bytes(4, "big", signed=True) for v in (20, -32768)}


def _kind(head: bytes) -> str | None:
    if head[:4] == _PP_BIG:
        return "pp"
    if head[:4] == _PP_LITTLE:
        return "pp_little"
    if head[:8] in _FF_64:
        return "ff"
    if head[:4] in _FF_32:
        return "ff32"
    return None


class PPReader(FormatReader):
    """UM PP (big- or little-endian) and fieldsfiles, read with iris."""

    name = "pp"
    label = "UM PP/fieldsfile"
    modules = ("iris",)

    def sniff(self, head: bytes) -> bool:
        return _kind(head) is not None

    def check(self, path: Path) -> None:
        self.require(path)
        with open(path, "rb") as fh:
            kind = _kind(fh.read(8))
        if kind == "pp":  # fieldsfiles are direct access: no record lengths to walk
            check_fortran_records(path, "PP")

    def load_cubes(self, path: Path) -> Any:
        from iris.fileformats import pp, um

        from hpc_workflows.formats.cubes import load_with_iris

        with open(path, "rb") as fh:
            kind = _kind(fh.read(8))
        loader = {"pp_little": pp.load_cubes_little_endian, "ff": um.load_cubes,
                  "ff32": um.load_cubes_32bit_ieee}.get(kind or "pp", pp.load_cubes)
        return load_with_iris(path, loader, self.label)
