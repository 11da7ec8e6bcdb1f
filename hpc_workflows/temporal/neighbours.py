"""A file's own time steps plus the steps of neighbouring files that its windows need.

A 09:00-09:00 rain day written from daily files needs the first nine hours of the next file;
3-hourly sums of values ending at their time need the next file's 00:00 value. The caller
names the neighbouring files (typically the previous and following day) and, best, the period
the file owns; :func:`open_with_neighbours` plans the windows from the file's own steps, reads
only the neighbours' steps that fall inside those windows (lazily), and reports neighbours
that were not there, whose windows then come out missing through the completeness rule.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hpc_workflows.temporal.aggregate import check_time
from hpc_workflows.temporal.rules import TimeAggregation
from hpc_workflows.temporal.windows import Windows, infer_step, interval_starts, plan_windows

__all__ = ["WithNeighbours", "neighbour_fingerprint", "open_with_neighbours", "plan_neighbours"]


@dataclass
class WithNeighbours:
    """What :func:`~hpc_workflows.temporal.aggregate.aggregate_windows` needs: the steps, the windows to write, the input step."""

    ds: xr.Dataset
    windows: Windows
    step: float
    missing: list[Path] = field(default_factory=list)
    used: dict[Path, int] = field(default_factory=dict)


def neighbour_fingerprint(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Name, size and mtime of each neighbour (or that it is missing), for re-run checks.

    An output made while a neighbour was missing must be rebuilt once it arrives; hashing
    whole neighbour files only to decide that would cost a full read of each.
    """
    found: list[dict[str, Any]] = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            found.append({"path": str(path), "missing": True})
            continue
        found.append({"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return found


def plan_neighbours(files: Sequence[tuple[_dt.datetime, Path]], step: _dt.timedelta,
                    ) -> dict[Path, tuple[list[Path], tuple[_dt.datetime, _dt.datetime]]]:
    """``neighbours`` and ``period`` for each file of a run of files one ``step`` apart.

    Parameters
    ----------
    files
        ``(nominal start, path)`` of each file, e.g. each daily file's date at 00:00.
    step
        How much time one file covers (the run's ``window.step``).

    Returns
    -------
    dict
        path -> (the files just before and just after it, ``(start, start + step)``). A file
        outside ``files`` is not named: the windows that need it come out missing.
    """
    by_start = {start: Path(path) for start, path in files}
    plan: dict[Path, tuple[list[Path], tuple[_dt.datetime, _dt.datetime]]] = {}
    for start, path in by_start.items():
        around = [by_start[t] for t in (start - step, start + step) if t in by_start]
        plan[path] = (around, (start, start + step))
    return plan


@contextlib.contextmanager
def open_with_neighbours(own: xr.Dataset, names: list[str], agg: TimeAggregation, *,
                         neighbours: Sequence[Path] = (),
                         period: tuple[_dt.datetime, _dt.datetime] | None = None,
                         chunks_of: Callable[[Path], dict[str, int]] | None = None,
                         ) -> Iterator[WithNeighbours]:
    """Open the neighbours and join their needed steps to ``own`` (lazy; closed on exit).

    Parameters
    ----------
    own
        The file's own data (already cut to the run's window), opened lazily.
    names
        Variables to aggregate; each neighbour must have them on the same grid.
    agg
        The rules.
    neighbours
        Other files of the same product whose steps may fall in this file's windows. A path
        that does not exist is a missing neighbour, not an error.
    period
        ``[start, end)`` of the window starts this file owns; see :func:`plan_windows`.
    chunks_of
        Dask chunks to open a neighbour with (default: one chunk per stored chunk).

    Yields
    ------
    WithNeighbours
    """
    times = check_time(own)
    source = str(own.encoding.get("source", "input"))
    step = infer_step(times, agg.input_step, source)
    windows = plan_windows(interval_starts(times, step, agg.input_interval), agg, step,
                           period=period, source=source)
    parts = [own[names]]
    missing: list[Path] = []
    used: dict[Path, int] = {}
    with contextlib.ExitStack() as stack:
        for path in map(Path, neighbours):
            if not path.is_file():
                missing.append(path)
                continue
            other = stack.enter_context(xr.open_dataset(
                path, chunks=chunks_of(path) if chunks_of else {}))
            absent = [n for n in names if n not in other.data_vars]
            if absent:
                raise ValueError(f"{path}: neighbouring file lacks {absent}: give neighbours "
                                 "of the same product")
            theirs = check_time(other)
            starts = interval_starts(theirs, step, agg.input_interval)
            take = (windows.index_of(starts) >= 0) & ~np.isin(theirs, times)
            if not take.any():
                continue
            part = other[names].isel(time=np.nonzero(take)[0])
            for name in names:
                mine, their = own[name], part[name]
                if mine.dims != their.dims or any(
                        mine.sizes[d] != their.sizes[d] for d in mine.dims if d != "time"):
                    raise ValueError(f"{path}: {name} is on a different grid "
                                     f"{dict(their.sizes)} from {source} {dict(mine.sizes)}: "
                                     "neighbours must be the same product and grid")
            parts.append(part)
            used[path] = int(take.sum())
        # In time order (a previous file's steps first), so the join needs no re-sorting.
        parts.sort(key=lambda p: p["time"].values[0])
        joined = parts[0] if len(parts) == 1 else xr.concat(
            parts, dim="time", data_vars="all", coords="minimal", compat="override",
            join="override", combine_attrs="override")
        joined.encoding["source"] = source
        if not joined.indexes["time"].is_monotonic_increasing:
            joined = joined.sortby("time")
        yield WithNeighbours(joined, windows, step, missing, used)
