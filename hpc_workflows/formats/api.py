"""Recognise a file by its content and turn it into netCDF: the functions the steps call.

``detect`` reads a few bytes (decompressing a gzip stream on the fly), ``check_readable``
adds a cheap structural check (lengths against the file size) so a damaged or unknown file
is refused before any work, and ``to_netcdf`` converts it, writing ``<out>.part`` and
renaming it so that ``out`` is never a half-written file.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from pathlib import Path

from hpc_workflows.formats.base import (
    FormatError,
    FormatReader,
    private_dir,
    read_head,
)
from hpc_workflows.formats.grib import GribReader
from hpc_workflows.formats.netcdf import NetCDFReader
from hpc_workflows.formats.nimrod import NimrodReader
from hpc_workflows.formats.pp import PPReader

__all__ = ["FORMATS", "detect", "check_readable", "to_netcdf", "reader"]

logger = logging.getLogger("hpc_workflows.formats")

# Tried in this order; their magic numbers do not overlap.
_READERS: tuple[FormatReader, ...] = (NetCDFReader(), NimrodReader(), PPReader(), GribReader())
FORMATS: tuple[str, ...] = tuple(r.name for r in _READERS)
"""The names ``source.format`` accepts besides ``auto``."""
_CHUNK = 1 << 20


def reader(name: str) -> FormatReader:
    """The reader for a format name (one of :data:`FORMATS`)."""
    for r in _READERS:
        if r.name == name:
            return r
    raise ValueError(f"unknown format {name!r}: use 'auto' or one of {', '.join(FORMATS)}")


def _tried() -> str:
    return ", ".join(r.label for r in _READERS) + " (each plain or gzip-compressed)"


def _resolve(path: Path, format: str | None) -> tuple[FormatReader, bool]:
    """The reader for ``path`` (forced by ``format`` or recognised), and whether it is gzipped."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    head, gzipped = read_head(path)
    found = next((r for r in _READERS if r.sniff(head)), None)
    if format not in (None, "auto"):
        forced = reader(format)
        # Forcing is for headers the magic numbers miss, not for overruling a clear match:
        # reading NIMROD bytes as netCDF would only fail with a misleading message.
        if found is not None and found is not forced:
            raise FormatError(
                f"{path}: source.format is {format!r} but the file is {found.label}: "
                f"set source.format to 'auto' or {found.name!r}"
            )
        return forced, gzipped
    if found is not None:
        return found, gzipped
    raise FormatError(
        f"{path}: not a format we can read (first bytes {head[:8].hex(' ')}); tried {_tried()}. "
        "If it is one of these with an unusual header, set source.format to force it"
    )


def detect(path: Path) -> str:
    """The format of ``path``, recognised by its first bytes (not its name).

    Parameters
    ----------
    path : Path
        Any file; gzip-compressed files are recognised by what they contain.

    Returns
    -------
    str
        One of :data:`FORMATS` (``"netcdf"``, ``"nimrod"``, ``"pp"``, ``"grib"``).

    Raises
    ------
    FormatError
        If the file is in none of them (naming the file and the formats tried).
    """
    return _resolve(Path(path), None)[0].name


def check_readable(path: Path, format: str | None = "auto", *, require: str | None = None) -> str:
    """Refuse, before any work, a file that cannot be read correctly; return its format.

    Checks that the format is known (by content, or as forced by ``format``), that the reader
    it needs is installed, and that the file is whole where that is cheap to tell: a netCDF-3
    file must be as long as its header says, an HDF5 file must open, NIMROD and PP records
    must be complete. A gzipped file is checked when it is converted.

    Parameters
    ----------
    path : Path
        The file.
    format : str, optional
        ``"auto"`` (default) or one of :data:`FORMATS` to skip recognition.
    require : str, optional
        The only format the caller can read (e.g. ``"netcdf"`` for the regrid step); any
        other is refused with a message saying to convert it first.

    Returns
    -------
    str
        The file's format.

    Raises
    ------
    FormatError
        Naming the file and what is wrong (a ``ValueError``).
    """
    path = Path(path)
    r, gzipped = _resolve(path, format)
    if require is not None and (r.name != require or gzipped):
        what = f"gzip-compressed {r.label}" if gzipped else r.label
        raise FormatError(
            f"{path} is {what}, but this step reads only uncompressed {reader(require).label}: "
            "convert it first with hpc_workflows.formats.to_netcdf (the fetch step does this "
            "when it merges archive members)"
        )
    if gzipped:
        r.require(path)
    else:
        r.check(path)
    return r.name


def _gunzip(path: Path, scratch: Path) -> Path:
    """Decompress ``path`` into the private ``scratch`` folder (readers need a plain file)."""
    target = private_dir(scratch) / (path.name[:-3] if path.name.endswith(".gz") else path.name)
    try:
        with gzip.open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    except (OSError, EOFError) as exc:
        raise FormatError(f"{path}: gzip stream is damaged ({exc}); fetch it again") from None
    return target


def to_netcdf(path: Path, out: Path, format: str | None = None) -> str:
    """Convert ``path`` (NIMROD, PP/fieldsfile, GRIB, netCDF; gzipped or not) to netCDF ``out``.

    The output keeps what the source knew, as iris maps it to CF: validity time (with
    bounds for accumulations), forecast reference time and period, units, standard names,
    the grid mapping (e.g. OSGB transverse Mercator for NIMROD) and missing data as
    ``_FillValue``. A single-time field gets a length-1 ``time`` dimension so that a day of
    files concatenates along time. A netCDF input is copied unchanged.

    Parameters
    ----------
    path : Path
        The source file.
    out : Path
        The netCDF file to write (atomically: ``out`` is complete or absent).
    format : str, optional
        None or ``"auto"`` to recognise the format by content, or one of :data:`FORMATS`.

    Returns
    -------
    str
        The source's format.

    Raises
    ------
    FormatError
        If the file is unknown, damaged, or needs a reader that is not installed (naming the
        file and, for the last, the pip extra to install).
    """
    path, out = Path(path), Path(out)
    r, gzipped = _resolve(path, format)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.with_name(f".{out.name}.unpacked")
    part = out.with_name(f"{out.name}.part")
    try:
        plain = _gunzip(path, scratch) if gzipped else path
        r.check(plain)
        if r.name == "netcdf":
            shutil.copyfile(plain, part)
        else:
            from hpc_workflows.formats.cubes import save_cubes

            save_cubes(r.load_cubes(plain), part)
            NetCDFReader().check(part)  # what we wrote opens as netCDF
        with open(part, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("converted %s (%s%s) to %s", path, "gzipped " if gzipped else "", r.label, out)
    return r.name
