"""Merging one day's files of a product into one netCDF, written atomically."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import xarray as xr  # imported where used: not at job-definition load

logger = logging.getLogger("hpc_workflows.fetch")


def _merged_from(paths: list[Path]) -> str:
    """Provenance attribute naming the inputs; also tells a re-run whether the inputs changed."""
    return ", ".join(p.name for p in sorted(paths))[:4000]


def _complete(path: Path, merged_from: str) -> bool:
    """True when ``path`` opens as netCDF and was merged from the same inputs."""
    import xarray as xr

    try:
        with xr.open_dataset(path, decode_times=False) as ds:
            return ds.attrs.get("merged_from") == merged_from
    except Exception:  # noqa: BLE001 - any failure to open means "not complete"
        return False


def _check_members(pairs: list[tuple[Path, Path]]) -> None:
    """Refuse members that would merge wrongly: units that disagree (K vs degC), where
    open_mfdataset would keep the first file's attributes and silently mislabel the rest,
    and members that share a timestamp, where it would fail later with a pandas indexing
    error that names no file (or, nested, keep both and double-count the hour)."""
    import xarray as xr

    from hpc_workflows.regrid.validate import check_consistent_units

    opened = [xr.open_dataset(readable, decode_times=False) for _, readable in pairs]
    members = [member for member, _ in pairs]
    try:
        for ds, member in zip(opened, members):
            ds.encoding["source"] = str(member)  # messages name the member, not its conversion
        check_consistent_units(opened)
        _check_distinct_times(opened, members)
    finally:
        for ds in opened:
            ds.close()


def _check_distinct_times(opened: list[xr.Dataset], paths: list[Path]) -> None:
    """Raise ValueError naming both members when two give the same time step."""
    from xarray.coding.times import decode_cf_datetime

    seen: dict[str, Path] = {}
    for ds, path in zip(opened, paths):
        if "time" not in ds.variables:
            continue
        raw = np.atleast_1d(ds["time"].values)
        units = str(ds["time"].attrs.get("units", ""))
        try:
            # Decoded, so that members written with different units still compare.
            values = decode_cf_datetime(raw, units, ds["time"].attrs.get("calendar"))
        except (ValueError, TypeError, OverflowError):
            values = np.array([f"{v} {units}" for v in raw.tolist()])
        for value in map(str, values):  # ISO text: one key for datetime64 and cftime alike
            if value in seen:
                raise ValueError(
                    f"merge_daily: archive members {seen[value].name} and {path.name} both hold "
                    f"time {value}: the archive has a duplicate; choose one with source.members "
                    f"({path.parent})"
                )
            seen[value] = path


def _as_netcdf(paths: list[Path], scratch: Path, format: str | None) -> list[tuple[Path, Path]]:
    """Check every member and convert the non-netCDF ones (NIMROD, PP, GRIB) into ``scratch``.

    Returns
    -------
    list of (Path, Path)
        Each member with the netCDF file to read for it (itself, or its conversion).

    Raises
    ------
    ValueError
        Naming the first member that is unreadable, damaged, or in an unknown format.
    """
    from hpc_workflows.formats import FormatError, check_readable, to_netcdf
    from hpc_workflows.formats.base import private_dir, read_head

    ready: list[tuple[Path, Path]] = []
    for path in paths:
        try:
            kind = check_readable(path, format)
            if kind == "netcdf" and not read_head(path, 2)[1]:
                ready.append((path, path))
                continue
            # Numbered: members of different folders may share a base name.
            converted = private_dir(scratch) / f"{len(ready):05d}_{path.name}.nc"
            to_netcdf(path, converted, format)
            ready.append((path, converted))
        except FormatError as exc:
            raise ValueError(f"merge_daily: archive member {path.name} cannot be merged: {exc}") from None
    return ready


def merge_daily(paths: list[Path], out_path: Path, format: str | None = "auto") -> Path:
    """Merge the given files (one day of one product) into the netCDF file ``out_path``.

    Members may be netCDF, NIMROD, UM PP/fieldsfile or GRIB (recognised by content, see
    :mod:`hpc_workflows.formats`); the others are converted to netCDF in a private scratch
    folder next to ``out_path`` first, which is removed once the merge is written.

    Files are combined along their shared ``time`` coordinate (by coordinate values, so the
    input order does not matter), lazily with dask so memory stays bounded by the chunk size.
    The output is written with `write_netcdf_atomic`; an existing output that opens and was
    merged from the same input names is kept (re-runs skip it), anything else is replaced.

    Parameters
    ----------
    paths : list of Path
        Input files (archive members).
    out_path : Path
        The merged file.
    format : str, optional
        ``"auto"`` (recognise each member) or a format name from
        :data:`hpc_workflows.formats.FORMATS` to force it (``source.format``).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ValueError
        If ``paths`` is empty, a member cannot be read, members share a time step or
        disagree on units, or the files cannot be combined (naming the member or files).
    """
    out_path = Path(out_path)
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError(f"merge_daily: no input files for {out_path}")
    merged_from = _merged_from(paths)
    if out_path.exists() and _complete(out_path, merged_from):
        logger.info("%s already complete; skipping merge", out_path)
        return out_path
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"merge_daily: input file(s) missing: {', '.join(missing)}")
    # Conversions live only as long as this call: a re-run may see different members.
    scratch = out_path.with_name(f".{out_path.name}.members")
    try:
        _merge(_as_netcdf(sorted(paths), scratch, format), out_path, merged_from)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_path


def _merge(pairs: list[tuple[Path, Path]], out_path: Path, merged_from: str) -> None:
    """Combine the members' netCDF files along time and write ``out_path`` atomically."""
    import xarray as xr

    from hpc_workflows.write.netcdf import write_netcdf_atomic

    _check_members(pairs)
    paths = [readable for _, readable in pairs]
    try:
        ds = xr.open_mfdataset(
            paths, combine="by_coords", data_vars="minimal", coords="minimal",
            compat="override", join="outer", chunks={},
        )
    except Exception as exc:  # noqa: BLE001 - re-raised with the file names
        try:
            ds = xr.open_mfdataset(
                paths, combine="nested", concat_dim="time", data_vars="minimal",
                coords="minimal", compat="override", chunks={},
            )
        except Exception:  # noqa: BLE001
            raise ValueError(
                f"merge_daily: cannot combine {len(paths)} file(s) into {out_path} ({exc}); "
                f"first member {pairs[0][0]}"
            ) from None
    try:
        ds.attrs["merged_from"] = merged_from
        write_netcdf_atomic(ds, out_path)
    finally:
        ds.close()
