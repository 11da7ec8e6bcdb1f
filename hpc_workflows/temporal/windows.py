"""Aggregation windows and which input steps belong to them.

Only time coordinates are handled here (small numpy arrays, never the data): the input's
step, the start of the interval each value stands for, and the windows with the number of
steps each should hold. Works with numpy datetime64 and cftime times alike.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpc_workflows.temporal.rules import TimeAggregation

__all__ = ["Windows", "infer_step", "interval_starts", "plan_windows"]


def _seconds(delta: Any) -> float:
    """Seconds in a numpy timedelta64 or datetime.timedelta (what cftime differences are)."""
    if isinstance(delta, np.timedelta64):
        return float(delta / np.timedelta64(1, "s"))
    return float(delta.total_seconds())


def _plus(times: np.ndarray, seconds: float) -> np.ndarray:
    """``times`` shifted by ``seconds`` (datetime64 or cftime object arrays)."""
    if np.issubdtype(times.dtype, np.datetime64):
        return times + np.timedelta64(int(round(seconds * 1e6)), "us")
    delta = _dt.timedelta(seconds=seconds)
    return np.array([t + delta for t in times], dtype=object)


def infer_step(times: np.ndarray, configured: str | None, source: str = "input") -> float:
    """The input's regular step in seconds: ``configured``, or read from ``times``.

    Absent steps are fine (the step is the smallest difference and every difference must be a
    whole number of it); an irregular axis or a single step needs ``input_step``.

    Raises
    ------
    ValueError
        Duplicate or irregular times, or one time step, without ``input_step``.
    """
    if configured is not None:
        import pandas as pd

        return float(pd.Timedelta(configured).total_seconds())
    if times.size < 2:
        raise ValueError(f"{source}: cannot tell the time step from {times.size} time step(s): "
                         "set time_aggregation.input_step (e.g. '5min')")
    diffs = np.array([_seconds(d) for d in np.diff(times)])
    step = float(diffs.min())
    if step <= 0:
        raise ValueError(f"{source}: time steps are not strictly increasing (duplicate or "
                         "unsorted times): fix the input")
    ratio = diffs / step
    if not np.allclose(ratio, np.round(ratio), atol=1e-6):
        raise ValueError(f"{source}: irregular time steps ({sorted(set(diffs.tolist()))[:4]} s): "
                         "set time_aggregation.input_step to the regular step")
    return step


def interval_starts(times: np.ndarray, step: float, input_interval: str) -> np.ndarray:
    """Where the interval each value stands for starts.

    A value "ending" at 24:00 stands for 23:55-24:00, so it falls in the window that holds
    23:55: windows are half-open ``[start, end)`` over these starts for every convention.
    """
    return _plus(times, -step) if input_interval == "ending" else times


@dataclass(frozen=True)
class Windows:
    """Consecutive windows ``[starts[i], ends[i])`` and the input steps each should hold."""

    starts: np.ndarray
    ends: np.ndarray
    expected: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.size)

    def index_of(self, interval_start: np.ndarray) -> np.ndarray:
        """Window index of each interval start, -1 where it is in no window."""
        if len(self) == 0 or interval_start.size == 0:
            return np.full(interval_start.shape, -1, dtype=np.int64)
        idx = np.searchsorted(self.starts, interval_start, side="right") - 1
        inside = idx >= 0
        inside[inside] = interval_start[inside] < self.ends[idx[inside]]
        return np.where(inside, idx, -1).astype(np.int64)


def _grouping(agg: TimeAggregation) -> tuple[str, dict[str, Any]]:
    """``freq`` and keyword arguments for ``resample`` that cut ``agg``'s windows."""
    import pandas as pd

    freq = agg.freq
    off = pd.tseries.frequencies.to_offset(freq)
    if isinstance(off, pd.offsets.Day):
        # pandas 3 treats days as calendar days, which ignore ``origin``; times here are
        # naive UTC, where a day is 24 hours, and "48h" can be anchored.
        freq = f"{off.n * 24}h"
        off = pd.tseries.frequencies.to_offset(freq)
    kwargs: dict[str, Any] = {"closed": "left", "label": "left"}
    if agg.offset is not None:
        kwargs["offset"] = agg.offset
    # Fixed-length windows count from the epoch, not from each file's first day, so that
    # every file of a run (each aggregated on its own) cuts the same windows.
    if isinstance(off, pd.offsets.Tick):
        kwargs["origin"] = "epoch"
    return freq, kwargs


def _like(value: _dt.datetime, sample: Any) -> Any:
    """``value`` in the time type of ``sample`` (numpy datetime64 or a cftime calendar)."""
    if isinstance(sample, np.datetime64):
        return np.datetime64(value.replace(tzinfo=None), "ns")
    # replace() keeps the calendar's own class (Datetime360Day...), which xarray needs to
    # see a CFTimeIndex; a generic cftime.datetime would not do.
    return sample.replace(year=value.year, month=value.month, day=value.day, hour=value.hour,
                          minute=value.minute, second=value.second,
                          microsecond=value.microsecond)


def plan_windows(interval_start: np.ndarray, agg: TimeAggregation, step: float, *,
                 period: tuple[_dt.datetime, _dt.datetime] | None = None,
                 source: str = "input") -> Windows:
    """The windows an output holds and how many input steps each expects.

    Parameters
    ----------
    interval_start
        :func:`interval_starts` of the file's own time steps.
    agg
        The rules (``freq``, ``offset``).
    step
        Input step in seconds.
    period
        ``[start, end)`` of the window starts this output owns (e.g. its day when files are
        daily), so that a window absent from the file entirely is still reported, and a
        window shared with a neighbouring file is written by one file only. Default: every
        window from the first to the last of the file's own steps.
    source
        Name for error messages.

    Returns
    -------
    Windows
    """
    import xarray as xr

    times = interval_start
    weights = np.ones(times.size)
    if period is not None and times.size:
        sample = times[0]
        edge = _like(period[1] - _dt.timedelta(microseconds=1), sample)
        times = np.concatenate([times, np.array([_like(period[0], sample), edge],
                                                dtype=times.dtype)])
        weights = np.concatenate([weights, [0.0, 0.0]])
        order = np.argsort(times, kind="stable")
        times, weights = times[order], weights[order]
    if times.size == 0:
        empty = np.array([], dtype=interval_start.dtype)
        return Windows(empty, empty, np.array([], dtype=np.int64))
    marks = xr.DataArray(weights, dims="time", coords={"time": times})
    freq, kwargs = _grouping(agg)
    starts = marks.resample(time=freq, **kwargs).sum()["time"].values
    if period is not None:
        lo, hi = _like(period[0], starts[0]), _like(period[1], starts[0])
        starts = starts[(starts >= lo) & (starts < hi)]
    ends = _window_ends(starts, agg.freq)
    lengths = np.array([_seconds(e - s) for s, e in zip(starts, ends)]) / step
    expected = np.round(lengths).astype(np.int64)
    if not np.allclose(lengths, expected, atol=1e-6):
        raise ValueError(f"{source}: windows of {agg.freq!r} do not hold a whole number of "
                         f"{step:g} s input steps: set time_aggregation.freq or input_step")
    return Windows(starts, ends, expected)


def _window_ends(starts: np.ndarray, freq: str) -> np.ndarray:
    """Each window's end: its start plus one ``freq`` (calendar-aware for months, years)."""
    if starts.size == 0:
        return starts.copy()
    if np.issubdtype(starts.dtype, np.datetime64):
        import pandas as pd

        off = pd.tseries.frequencies.to_offset(freq)
        return np.array([(pd.Timestamp(t) + off).to_datetime64() for t in starts],
                        dtype=starts.dtype)
    from xarray.coding.cftime_offsets import to_offset

    off = to_offset(freq)
    return np.array([t + off for t in starts], dtype=object)
