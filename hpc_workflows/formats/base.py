"""What every input format shares: the reader interface, the errors, and reading a file's head.

One module per format (``netcdf``, ``nimrod``, ``pp``, ``grib``) subclasses :class:`FormatReader`;
:mod:`hpc_workflows.formats.api` holds the registry that tries them in turn. Nothing here
imports iris or eccodes: recognising a file must stay cheap (a few bytes read), and the heavy
readers are an optional extra that only files which need them should ask for.
"""

from __future__ import annotations

import gzip
import importlib
import os
import zlib
from pathlib import Path

__all__ = [
    "FormatError",
    "FormatReader",
    "MissingReaderError",
    "GZIP_MAGIC",
    "read_head",
    "FORMATS_EXTRA",
    "check_fortran_records",
    "private_dir",
]

GZIP_MAGIC = b"\x1f\x8b"
# Enough for every magic number we test (GRIB may sit behind a short WMO bulletin header).
HEAD_BYTES = 128
# The pip extra that brings the iris/eccodes readers (see pyproject.toml).
FORMATS_EXTRA = "formats"


class FormatError(ValueError):
    """A file is in no format we can read, or is damaged. The message names the file.

    A ``ValueError`` so that the pipeline treats it as final: reading the same bytes again
    cannot succeed, so a step retry would only waste a batch slot.
    """


class MissingReaderError(FormatError):
    """A file needs a reader from an optional extra that is not installed."""


def read_head(path: Path, size: int = HEAD_BYTES) -> tuple[bytes, bool]:
    """The first ``size`` bytes of ``path``, decompressed if it is gzipped.

    Returns
    -------
    tuple of (bytes, bool)
        The head, and whether the file was gzip-compressed.

    Raises
    ------
    FormatError
        If the file cannot be opened, or is gzipped but its start does not decompress.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(size)
            if not raw.startswith(GZIP_MAGIC):
                return raw, False
            fh.seek(0)
            with gzip.GzipFile(fileobj=fh) as gz:
                return gz.read(size), True
    except (OSError, EOFError, zlib.error) as exc:
        raise FormatError(f"{path}: cannot read the start of the file ({exc})") from None


class FormatReader:
    """One input format: how to recognise it and how to turn it into CF netCDF.

    Subclasses set the class attributes and implement :meth:`sniff`; those read by iris also
    implement :meth:`load_cubes`.

    Attributes
    ----------
    name : str
        The value of ``source.format`` that forces this reader (``"nimrod"``).
    label : str
        What error messages call it (``"NIMROD"``).
    modules : tuple of str
        Python modules the reader needs; missing ones raise :class:`MissingReaderError`
        naming :data:`FORMATS_EXTRA`.
    """

    name: str = ""
    label: str = ""
    modules: tuple[str, ...] = ()

    def sniff(self, head: bytes) -> bool:
        """True when ``head`` (a file's first bytes, decompressed) starts this format."""
        raise NotImplementedError

    def require(self, path: Path) -> None:
        """Raise :class:`MissingReaderError` if this reader's libraries are not installed."""
        missing = []
        for module in self.modules:
            try:
                importlib.import_module(module)  # a broken install counts as missing too
            except ImportError:
                missing.append(module)
        if missing:
            raise MissingReaderError(
                f"{path} is {self.label}, which needs {', '.join(missing)}: install the "
                f"'{FORMATS_EXTRA}' extra (pip install 'hpc_workflows[{FORMATS_EXTRA}]')"
            )

    def check(self, path: Path) -> None:
        """Cheap structural check before any work (default: only the libraries)."""
        self.require(path)

    def load_cubes(self, path: Path):  # pragma: no cover - overridden by the iris formats
        """The file's fields as an iris ``CubeList`` (iris-read formats only)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by its owner only, and return it.

    Scratch copies of a user's data must not be readable by other users of a shared node.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def check_fortran_records(path: Path, label: str) -> None:
    """Walk a big-endian Fortran sequential file (NIMROD, PP) and refuse a truncated one.

    Every record is ``<length> <bytes> <length>`` with 4-byte lengths, so the walk reads
    8 bytes per record whatever the data size. iris would otherwise fail on a cut file with
    a numpy reshape error, or read its last field short.

    Raises
    ------
    FormatError
        Naming the file, the record and the byte offset where it stops making sense.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset, record = 0, 0
        while offset < size:
            record += 1
            fh.seek(offset)
            lead = fh.read(4)
            if len(lead) < 4:
                break
            length = int.from_bytes(lead, "big")
            end = offset + 4 + length
            fh.seek(end)
            trail = fh.read(4)
            if len(trail) < 4:
                raise FormatError(
                    f"{path}: {label} file is truncated: record {record} at byte {offset} "
                    f"declares {length} bytes but the file ends at {size}; fetch it again"
                )
            if trail != lead:
                raise FormatError(
                    f"{path}: {label} record {record} at byte {offset} is damaged (its "
                    f"lengths {length} and {int.from_bytes(trail, 'big')} differ)"
                )
            offset = end + 4
        if offset != size:
            raise FormatError(f"{path}: {label} file ends inside a record header (byte {offset} of {size})")
