"""NIMROD: the Met Office radar and nowcast format (one or more 2-D fields, big-endian).

Each field is a Fortran record holding a 512-byte header (int16 and float32 fields: validity
and data times, grid, projection, missing-data values, units) and a record of data. iris
reads it (``iris.fileformats.nimrod``), including the British National Grid projection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpc_workflows.formats.base import FormatReader, check_fortran_records

__all__ = ["NimrodReader"]

# The first record's length, as a big-endian int32: the header is always 512 bytes.
_MAGIC = (512).to_bytes(4, "big")


class NimrodReader(FormatReader):
    """NIMROD files (gzipped or not), read with iris."""

    name = "nimrod"
    label = "NIMROD"
    modules = ("iris",)

    def sniff(self, head: bytes) -> bool:
        return head[:4] == _MAGIC

    def check(self, path: Path) -> None:
        self.require(path)
        check_fortran_records(path, self.label)

    def load_cubes(self, path: Path) -> Any:
        from iris.fileformats import nimrod

        from hpc_workflows.formats.cubes import load_with_iris

        return load_with_iris(path, nimrod.load_cubes, self.label)
