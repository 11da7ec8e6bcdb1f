"""GRIB editions 1 and 2, read with iris-grib (over ecCodes, whose wheels bundle the library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpc_workflows.formats.base import FormatError, FormatReader

__all__ = ["GribReader"]

# A GRIB message starts with "GRIB"; a file from a WMO bulletin may have a short header
# before it. iris looks in the first 100 bytes, and so do we, so the two agree.
_SEARCH = 100


class GribReader(FormatReader):
    """GRIB 1 and 2 messages, read with iris-grib."""

    name = "grib"
    label = "GRIB"
    modules = ("iris", "iris_grib", "eccodes")

    def sniff(self, head: bytes) -> bool:
        return b"GRIB" in head[:_SEARCH]

    def check(self, path: Path) -> None:
        """Refuse a file whose last message is cut short (every message ends in ``7777``)."""
        self.require(path)
        _check_messages(path)

    def load_cubes(self, path: Path) -> Any:
        import iris_grib

        from hpc_workflows.formats.cubes import load_with_iris

        return load_with_iris(path, iris_grib.load_cubes, self.label)


def _check_messages(path: Path) -> None:
    """Walk the messages by their declared lengths (section 0), checking each end marker."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset, n = 0, 0
        while offset < size:
            fh.seek(offset)
            block = fh.read(_SEARCH + 16)
            start = block.find(b"GRIB")
            if start < 0:
                if n and not block.strip(b"\0 \r\n"):
                    return  # padding after the last message
                raise FormatError(f"{path}: no GRIB message at byte {offset}")
            n += 1
            edition = block[start + 7] if len(block) > start + 7 else 0
            if edition == 1:
                length = int.from_bytes(block[start + 4:start + 7], "big")
                if length & 0x800000:
                    return  # ECMWF's large-GRIB1 length encoding: leave it to ecCodes
            elif edition == 2:
                length = int.from_bytes(block[start + 8:start + 16], "big")
            else:
                raise FormatError(f"{path}: GRIB message {n} at byte {offset + start} has unknown edition {edition}")
            end = offset + start + length
            fh.seek(end - 4)
            if end > size or fh.read(4) != b"7777":
                raise FormatError(
                    f"{path}: GRIB message {n} at byte {offset + start} declares {length} bytes "
                    f"but {'the file ends at ' + str(size) if end > size else 'does not end in 7777'}: "
                    "the file is truncated or damaged; fetch it again"
                )
            offset = end
