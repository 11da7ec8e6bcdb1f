"""Merging one day's files of a product into one netCDF, written atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

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


def _check_units(paths: list[Path]) -> None:
    """Refuse to merge files whose variables disagree on units (K vs degC): open_mfdataset
    would keep the first file's attributes and silently mislabel the rest."""
    import xarray as xr

    from hpc_workflows.regrid.validate import check_consistent_units

    opened = [xr.open_dataset(p, decode_times=False) for p in paths]
    try:
        check_consistent_units(opened)
    finally:
        for ds in opened:
            ds.close()


def merge_daily(paths: list[Path], out_path: Path) -> Path:
    """Merge the given netCDF files (one day of one product) into ``out_path``.

    Files are combined along their shared ``time`` coordinate (by coordinate values, so the
    input order does not matter), lazily with dask so memory stays bounded by the chunk size.
    The output is written with `write_netcdf_atomic`; an existing output that opens and was
    merged from the same input names is kept (re-runs skip it), anything else is replaced.

    Parameters
    ----------
    paths : list of Path
        Input netCDF files.
    out_path : Path
        The merged file.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ValueError
        If ``paths`` is empty or the files cannot be combined (naming the files).
    """
    import xarray as xr

    from hpc_workflows.write.netcdf import write_netcdf_atomic

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
    _check_units(paths)
    try:
        ds = xr.open_mfdataset(
            sorted(paths), combine="by_coords", data_vars="minimal", coords="minimal",
            compat="override", join="outer", chunks={},
        )
    except Exception as exc:  # noqa: BLE001 - re-raised with the file names
        try:
            ds = xr.open_mfdataset(
                sorted(paths), combine="nested", concat_dim="time", data_vars="minimal",
                coords="minimal", compat="override", chunks={},
            )
        except Exception:  # noqa: BLE001
            raise ValueError(
                f"merge_daily: cannot combine {len(paths)} file(s) into {out_path} ({exc}); "
                f"first file {paths[0]}"
            ) from None
    try:
        ds.attrs["merged_from"] = merged_from
        write_netcdf_atomic(ds, out_path)
    finally:
        ds.close()
    return out_path
