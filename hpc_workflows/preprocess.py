"""Pre-process one fetched file: open, cut to the window, aggregate in time, regrid, write.

Plain Python (no Dagster): the ``regrid_and_write`` op is a thin wrapper around
:func:`preprocess_file`, so the same step can run in a notebook or a test.

A re-run skips an output that is already complete and correct: the output records the
sha256 of its input and a hash of the settings that made it, and both must still match.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

    from hpc_workflows.temporal import TimeAggregation

# xarray (with pandas and dask, ~0.7 s) and the xarray writer are imported where they are
# used: importing the job definitions (every `dagster` command, the UI's code location)
# then does not pay for them.

__all__ = ["PreprocessSettings", "PreprocessResult", "preprocess_file", "settings_digest"]

_INPUT_ATTR = "hpc_workflows_input_sha256"
_SETTINGS_ATTR = "hpc_workflows_settings_sha256"
_NEIGHBOURS_ATTR = "hpc_workflows_time_neighbours"


@dataclass(frozen=True)
class PreprocessSettings:
    """What to do to each file. Mirrors ``RegridConfig`` without the Dagster types."""

    target: str | dict[str, Any]
    method: str = "conservative"
    variables: list[str] | None = None
    min_valid_fraction: float = 0.5
    statistics: list[str] | None = None
    bands: list[tuple[float, float]] | None = None
    weights_dir: str | None = None
    #: Resampling in time before regridding (None: none); see docs/time.md.
    time_aggregation: TimeAggregation | None = None
    window_start: _dt.datetime | None = None
    window_end: _dt.datetime | None = None
    compression_level: int = 4
    check_area_means: bool = False


@dataclass
class PreprocessResult:
    """What one call produced, with figures for logs and Dagster metadata."""

    output: Path
    skipped: bool
    seconds: float
    variables: list[str] = field(default_factory=list)
    time_steps: int = 0
    mean_before: dict[str, float] = field(default_factory=dict)
    mean_after: dict[str, float] = field(default_factory=dict)
    #: With time aggregation: windows with fewer input steps than expected (their cells are
    #: missing unless min_sample_fraction allowed them), and neighbour files that were absent.
    incomplete_windows: int | None = None
    missing_neighbours: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for logs and Dagster output metadata."""
        meta: dict[str, Any] = {
            "output": str(self.output),
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "time_steps": self.time_steps,
            "variables": ", ".join(self.variables),
        }
        if self.incomplete_windows is not None:
            meta["incomplete_windows"] = self.incomplete_windows
        if self.missing_neighbours:
            meta["missing_neighbours"] = ", ".join(self.missing_neighbours)
        for name, value in self.mean_before.items():
            meta[f"area_mean_before[{name}]"] = value
        for name, value in self.mean_after.items():
            meta[f"area_mean_after[{name}]"] = value
        return meta


def settings_digest(settings: PreprocessSettings) -> str:
    """A stable hash of the settings, recorded in outputs to detect a changed config."""
    blob = json.dumps(settings.__dict__, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _completed(output: Path, stamp: dict[str, Any]) -> dict[str, Any] | None:
    """The attributes of ``output`` if it exists and carries ``stamp``, else None."""
    if not output.is_file():
        return None
    attrs = _global_attrs(output)
    if attrs is None:
        # Unreadable: not complete, so it is rebuilt (and replaced atomically).
        return None
    return attrs if all(attrs.get(k) == v for k, v in stamp.items()) else None


def _global_attrs(path: Path) -> dict[str, Any] | None:
    """A netCDF file's global attributes (netCDF4: no xarray decoding), None if unreadable."""
    import netCDF4

    from hpc_workflows.netcdf_lock import NETCDF_LOCK

    try:
        with NETCDF_LOCK, netCDF4.Dataset(path) as nc:
            return {k: nc.getncattr(k) for k in nc.ncattrs()}
    except (OSError, ValueError, RuntimeError):
        return None


def _written_figures(output: Path) -> tuple[int, Any]:
    """Time steps and the incomplete-windows attribute of a written output (netCDF4)."""
    import netCDF4

    from hpc_workflows.netcdf_lock import NETCDF_LOCK
    from hpc_workflows.temporal.aggregate import INCOMPLETE_ATTR

    with NETCDF_LOCK, netCDF4.Dataset(output) as nc:
        steps = len(nc.dimensions["time"]) if "time" in nc.dimensions else 0
        return steps, (nc.getncattr(INCOMPLETE_ATTR) if INCOMPLETE_ATTR in nc.ncattrs() else None)


def _streaming_variables(source: Path, settings: PreprocessSettings) -> list[str] | None:
    """The variables to regrid when ``source`` can take the streaming path, decided with
    netCDF4 alone; None when only the general path can tell.

    Opening a small file with xarray (decoding, indexes) was most of its per-file time, and
    the streaming regridder opens it with netCDF4 anyway. Whatever this cannot decide for
    sure (time aggregation, area means, a window that may cut the file, times it cannot
    compare, a requested variable xarray would not call data, no data variable) goes to the
    general path, which decides as before and raises its errors naming the field.
    """
    if settings.time_aggregation is not None or settings.check_area_means:
        return None
    import netCDF4

    from hpc_workflows.netcdf_lock import NETCDF_LOCK
    from hpc_workflows.regrid.errors import RegridError
    from hpc_workflows.regrid.stream import select_variables

    with NETCDF_LOCK, netCDF4.Dataset(source) as nc:
        if settings.variables:
            # xarray's data variables: not a dimension's variable, not named by a
            # `coordinates` attribute (of a variable or of the file).
            coords = set(nc.dimensions) | set(str(getattr(nc, "coordinates", "")).split())
            for var in nc.variables.values():
                coords.update(str(getattr(var, "coordinates", "")).split())
            if any(v not in nc.variables or v in coords for v in settings.variables):
                return None
            names = list(settings.variables)
        else:
            try:
                names = select_variables(nc, None, source)
            except RegridError:
                return None
        return names if _whole_file_in_window(nc, settings) else None


def _whole_file_in_window(nc: Any, settings: PreprocessSettings) -> bool:
    """Whether the window keeps every step of the open file (False: not sure)."""
    start, end = settings.window_start, settings.window_end
    if start is None and end is None:
        return True
    if "time" not in nc.dimensions:
        return True
    var = nc.variables.get("time")
    if var is None or tuple(var.dimensions) != ("time",) or var.size == 0:
        return False
    import cftime

    values = var[:]
    if np.ma.is_masked(values):
        return False
    values = np.asarray(values)
    if values.size > 1 and not np.all(np.diff(values) > 0):
        return False  # unsorted: label slicing is the general path's business
    try:
        # Python datetimes only (standard calendars): comparable with the window's.
        first, last = cftime.num2date(values[[0, -1]], var.units, getattr(var, "calendar", "standard"),
                                      only_use_cftime_datetimes=False, only_use_python_datetimes=True)
    except (AttributeError, TypeError, ValueError, OverflowError):
        return False
    # A second inside each end: cftime and xarray may round a float time differently, so a
    # step at (or a rounding error from) a window end is left to the xarray path's decision.
    margin = _dt.timedelta(seconds=1)
    try:
        return (start is None or first >= start + margin) and (end is None or last <= end - margin)
    except TypeError:  # a timezone-aware window
        return False


def _gridded_variables(ds: xr.Dataset, wanted: list[str] | None, source: Path) -> list[str]:
    if wanted:
        missing = [v for v in wanted if v not in ds.data_vars]
        if missing:
            raise ValueError(
                f"{source}: variables {missing} are not in the file (it has "
                f"{sorted(map(str, ds.data_vars))}): fix regrid.variables"
            )
        return list(wanted)
    from hpc_workflows.regrid.api import data_variables

    # The regridder's own rule: cell bounds (NEMO's bounds_lon) and coordinates are not data.
    return data_variables(ds)


def _subset_time(ds: xr.Dataset, settings: PreprocessSettings) -> xr.Dataset:
    if "time" not in ds.dims or (settings.window_start is None and settings.window_end is None):
        return ds
    start = settings.window_start.isoformat() if settings.window_start else None
    end = settings.window_end.isoformat() if settings.window_end else None
    return ds.sel(time=slice(start, end))


def preprocess_file(
    source: Path,
    output: Path,
    settings: PreprocessSettings,
    *,
    input_sha256: str,
    provenance_sources: list[dict[str, Any]] | None = None,
    neighbours: Sequence[Path] = (),
    period: tuple[_dt.datetime, _dt.datetime] | None = None,
) -> PreprocessResult:
    """Regrid one netCDF file and write the result atomically, unless already done.

    Parameters
    ----------
    source
        The fetched (and merged) netCDF file.
    output
        Final output path.
    settings
        Target grid, method and options.
    input_sha256
        Checksum of ``source`` (from the fetch step), recorded in the output and used to decide
        whether an existing output is still correct.
    provenance_sources
        ``[{"url": ..., "sha256": ...}]`` of the original files, recorded in the output.
    neighbours
        With time aggregation: other files of the same product (typically the previous and
        the following one) whose steps fall in this file's windows, e.g. the next day's
        00:00-09:00 for 09:00-09:00 rain days. Only those steps are read. A path that does
        not exist is a missing neighbour: the windows that needed it come out missing (and
        the output is rebuilt on a re-run once it exists).
    period
        With time aggregation: ``[start, end)`` of the window starts this output owns (for
        daily files, the file's day). Windows are then written by one file only, and a
        window with no step at all in this file is still written (missing). Default: the
        windows from this file's first to its last step.

    Returns
    -------
    PreprocessResult
    """
    from hpc_workflows.regrid import parse_target_grid

    started = time.perf_counter()
    digest = settings_digest(settings)
    stamp: dict[str, Any] = {_INPUT_ATTR: input_sha256, _SETTINGS_ATTR: digest}
    if settings.time_aggregation is not None and (neighbours or period):
        from hpc_workflows.temporal.neighbours import neighbour_fingerprint

        # The output depends on the neighbours and the period too: a re-run rebuilds it
        # when a missing neighbour has arrived or changed.
        stamp[_NEIGHBOURS_ATTR] = json.dumps(
            {"period": [str(t) for t in period] if period else None,
             "neighbours": neighbour_fingerprint(list(neighbours))}, sort_keys=True)
    done = _completed(output, stamp)
    if done is not None:
        from hpc_workflows.temporal.aggregate import INCOMPLETE_ATTR

        incomplete = done.get(INCOMPLETE_ATTR)
        return PreprocessResult(output=output, skipped=True, seconds=time.perf_counter() - started,
                                incomplete_windows=None if incomplete is None else int(incomplete))

    # Before any work: refuse a truncated, unknown or not-yet-converted file, naming it
    # (netCDF-C would read a cut netCDF-3 file's missing bytes as zeros). After the skip
    # check, so a complete output does not need its input any more.
    from hpc_workflows.formats import check_readable

    check_readable(source, require="netcdf")
    target = parse_target_grid(settings.target)
    target_text = json.dumps(settings.target) if isinstance(settings.target, dict) else settings.target
    stamp["regrid_target"] = target_text
    missing: list[str] = []
    sources = provenance_sources or [{"url": str(source), "sha256": input_sha256}]
    mean_before: dict[str, float] = {}
    mean_after: dict[str, float] = {}
    names = _streaming_variables(source, settings)
    if names is not None:
        _regrid_streaming(source, output, target, settings, names, stamp, sources)
    else:
        names, missing, mean_before, mean_after = _regrid_general(
            source, output, target, settings, stamp, sources, neighbours=neighbours, period=period)
    steps, incomplete = _written_figures(output)
    return PreprocessResult(
        output=output,
        skipped=False,
        seconds=time.perf_counter() - started,
        variables=list(names),
        time_steps=steps,
        mean_before=mean_before,
        mean_after=mean_after,
        incomplete_windows=None if incomplete is None else int(incomplete),
        missing_neighbours=missing,
    )


def _regrid_general(source: Path, output: Path, target: Any, settings: PreprocessSettings,
                    stamp: dict[str, Any], sources: list[dict[str, Any]], *,
                    neighbours: Sequence[Path],
                    period: tuple[_dt.datetime, _dt.datetime] | None,
                    ) -> tuple[list[str], list[str], dict[str, float], dict[str, float]]:
    """Open the file with xarray (dask-chunked over time), cut it to the window, then stream
    it (whole file, no resampling) or regrid it lazily. Returns the variables, the missing
    neighbours, and the area means before and after when ``check_area_means`` asks."""
    import xarray as xr

    missing: list[str] = []
    mean_before: dict[str, float] = {}
    mean_after: dict[str, float] = {}
    with xr.open_dataset(source, chunks=_time_chunks(source)) as ds:
        names = _gridded_variables(ds, settings.variables, source)
        window = _subset_time(ds, settings)
        if "time" in window.dims and window.sizes["time"] == 0:
            raise ValueError(
                f"{source}: no time steps fall inside the window "
                f"{settings.window_start} .. {settings.window_end}: check window.start/end"
            )
        whole_file = "time" not in ds.dims or window.sizes["time"] == ds.sizes["time"]
        if settings.time_aggregation is None and whole_file:
            _regrid_streaming(source, output, target, settings, names, stamp, sources)
        else:
            missing = _regrid_lazily(window, output, target, settings, names, stamp, sources,
                                     neighbours=neighbours, period=period,
                                     chunks_of=_time_chunks)
        if settings.check_area_means and settings.method != "aggregate" and not settings.time_aggregation:
            # After writing, from the files: the input is read once more, the output is small.
            with xr.open_dataset(output) as written:
                for name in names:
                    if name in written.data_vars:
                        mean_before[name] = _safe_mean(lambda da: _mean_over_target(da, target), window[name])
                        mean_after[name] = _safe_mean(_area_weighted_mean, written[name])
    return names, missing, mean_before, mean_after


def _area_weighted_mean(da: xr.DataArray) -> float:
    from hpc_workflows.regrid import area_weighted_mean

    return area_weighted_mean(da)


def _regrid_streaming(source: Path, output: Path, target: Any, settings: PreprocessSettings,
                      names: list[str], stamp: dict[str, Any], sources: list[dict[str, Any]]) -> None:
    """The fast path (whole file, no time resampling): netCDF4 in → netCDF4 out in chunks.

    ``regrid_file`` writes ``<output>.part``, adds the provenance and stamp to it before its
    one closing fsync, and only then renames it to ``output``: ``output`` is never a file
    without its stamp (before, the stamp was added by reopening a staged copy, which cost a
    second open, write and fsync per file).
    """
    from hpc_workflows.regrid import regrid_file
    from hpc_workflows.write import provenance_attrs

    regrid_file(
        source, output, target, settings.method,
        variables=names,
        min_valid_fraction=settings.min_valid_fraction,
        weights_dir=Path(settings.weights_dir) if settings.weights_dir else None,
        statistics=settings.statistics,
        bands=settings.bands,
        compression_level=settings.compression_level,
        final_attrs=lambda current: provenance_attrs(current, sources=sources, extra=stamp),
    )


def _regrid_lazily(ds: xr.Dataset, output: Path, target: Any, settings: PreprocessSettings,
                   names: list[str], stamp: dict[str, Any], sources: list[dict[str, Any]], *,
                   neighbours: Sequence[Path] = (),
                   period: tuple[_dt.datetime, _dt.datetime] | None = None,
                   chunks_of: Callable[[Path], dict[str, int]] | None = None) -> list[str]:
    """The general path: cut to the window and aggregate in time (with the neighbours'
    steps the windows need), then regrid lazily (dask, chunked over time) and stream the
    result to disk. Returns the neighbours that were missing."""
    agg = settings.time_aggregation
    if agg is None:
        _regrid_and_write(ds, output, target, settings, names, stamp, sources)
        return []
    from hpc_workflows.temporal import aggregate_windows, open_with_neighbours

    with open_with_neighbours(ds, names, agg, neighbours=neighbours, period=period,
                              chunks_of=chunks_of) as joined:
        resampled = aggregate_windows(joined.ds, agg, windows=joined.windows, step=joined.step)
        # Keep what describes the grid (grid_mapping variables, 2-D lat/lon, bounds).
        resampled = resampled.assign(_ancillaries(ds, names))
        _retime_units(resampled)
        _regrid_and_write(resampled, output, target, settings, names, stamp, sources)
        return [str(p) for p in joined.missing]


def _regrid_and_write(ds: xr.Dataset, output: Path, target: Any, settings: PreprocessSettings,
                      names: list[str], stamp: dict[str, Any],
                      sources: list[dict[str, Any]]) -> None:
    from hpc_workflows.regrid import regrid
    from hpc_workflows.write import add_provenance, write_netcdf_atomic

    out = regrid(
        ds,
        target,
        settings.method,
        variables=names,
        min_valid_fraction=settings.min_valid_fraction,
        weights_dir=Path(settings.weights_dir) if settings.weights_dir else None,
        statistics=settings.statistics,
        bands=settings.bands,
    )
    out = add_provenance(out, sources=sources, extra=stamp)
    write_netcdf_atomic(out, output, compression_level=settings.compression_level)


def _retime_units(ds: xr.Dataset) -> None:
    """Give time and its bounds the same units, fine enough for the resampled steps.

    The source's units (e.g. whole days as int64) may not hold 3-hourly steps exactly, and CF
    wants a bounds variable in its coordinate's units.
    """
    units = str(ds["time"].encoding.get("units", "days since 1970-01-01"))
    reference = units.split(" since ", 1)[1] if " since " in units else "1970-01-01"
    names = ["time"] + [str(ds["time"].attrs["bounds"])] if "bounds" in ds["time"].attrs else ["time"]
    for name in names:
        if name in ds.variables:
            ds[name].encoding.update(units=f"minutes since {reference}", dtype="float64")


def _ancillaries(ds: xr.Dataset, names: list[str]) -> dict[str, xr.DataArray]:
    """Non-time variables the named ones refer to (grid_mapping, bounds, coordinates)."""
    wanted: set[str] = set()
    for name in names:
        attrs = ds[name].attrs
        wanted.update(str(attrs.get("grid_mapping", "")).replace(":", " ").split()[:1])
        wanted.update(str(attrs.get("coordinates", "")).split())
    for name in list(ds.coords):
        bounds = ds[name].attrs.get("bounds")
        if bounds:
            wanted.add(str(bounds))
    return {n: ds[n] for n in wanted if n in ds.variables and "time" not in ds[n].dims}


def _time_chunks(path: Path, steps: int = 24) -> dict[str, int]:
    """Chunks of about ``steps`` time steps, aligned with the file's own chunking."""
    import xarray as xr

    with xr.open_dataset(path, chunks={}) as ds:
        if "time" not in ds.dims:
            return {}
        stored = max(
            (v.encoding.get("chunksizes") or (1,))[v.dims.index("time")]
            for v in ds.data_vars.values() if "time" in v.dims
        ) if any("time" in v.dims for v in ds.data_vars.values()) else 1
    return {"time": max(stored, (steps // stored) * stored)}


def _mean_over_target(da: xr.DataArray, target: Any) -> float:
    """Area-weighted mean of ``da`` (1-D lat/lon grid) over exactly the target's extent.

    Source cells are clipped to the target's bounding box, so this is the figure a
    conservative regrid must reproduce, for regional targets too. Other source grids raise
    ValueError (and the demo shows no figure).
    """
    import xarray as xr
    from hpc_workflows.regrid.areas import _bounds_of, _find_coord, lat_band_factor

    lat_name, lon_name = _find_coord(da, "lat"), _find_coord(da, "lon")
    lat_b = _bounds_of(da, lat_name, clip=(-90.0, 90.0))
    lon_b = _bounds_of(da, lon_name, clip=None)
    t_lat = np.asarray(target.lat_bnds, dtype=np.float64)
    t_lon = np.asarray(target.lon_bnds, dtype=np.float64)
    lat_c = np.clip(lat_b, t_lat.min(), t_lat.max())
    west = float(t_lon.min())
    span = float(np.sum(np.abs(t_lon[:, 1] - t_lon[:, 0])))
    if span >= 359.999:
        lon_w = np.abs(lon_b[:, 1] - lon_b[:, 0])
    else:
        # Put each source cell in the target's longitude frame, then clip to [west, west+span].
        shift = np.floor((lon_b.mean(axis=1, keepdims=True) - west + 180.0) / 360.0) * 360.0
        lon_c = np.clip(lon_b - shift, west, west + span)
        lon_w = np.abs(lon_c[:, 1] - lon_c[:, 0])
    w = xr.DataArray(lat_band_factor(lat_c), dims=(da[lat_name].dims[0],)) * xr.DataArray(
        lon_w, dims=(da[lon_name].dims[0],))
    w = w.where(w > 0)  # cells outside the target take no part, NaN or not
    valid = da.notnull() & w.notnull()
    num = float((da.where(valid).astype(np.float64) * w).sum())
    den = float(w.where(valid).sum())
    return num / den if den > 0 else float("nan")


def _safe_mean(fn: Any, da: xr.DataArray) -> float:
    try:
        value = float(fn(da))
    except (ValueError, KeyError):
        return float("nan")
    return value if np.isfinite(value) else float("nan")
