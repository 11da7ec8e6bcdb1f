"""Synthetic daily files of 5-minute rain rates with absent time steps, on a small lat/lon grid.

Values come from :func:`rate`, a plain function of time and cell, so every test computes its
reference with numpy from the same function and never from what the code under test read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

STEP = pd.Timedelta("5min")
LAT = np.array([50.25, 50.75, 51.25, 51.75])
LON = np.array([0.25, 0.75, 1.25, 1.75])
#: A regional target equal to the source grid: conservative regridding leaves values as they are.
TARGET = {"kind": "regional", "lat": [50.0, 52.0], "lon": [0.0, 2.0], "resolution": 0.5}


def day_times(day: dt.date, *, ending: bool = False) -> pd.DatetimeIndex:
    """The 288 times of a day's file: 00:00..23:55, or 00:05..24:00 when ``ending``."""
    first = pd.Timestamp(day) + (STEP if ending else pd.Timedelta(0))
    return pd.date_range(first, periods=288, freq=STEP)


def rate(times: Iterable[pd.Timestamp]) -> np.ndarray:
    """Rain rate (mm/h) at each time and cell, (time, lat, lon); differs in every step and cell."""
    minutes = np.array([(pd.Timestamp(t) - pd.Timestamp("2020-01-01")) / pd.Timedelta("1min")
                        for t in times])
    phase = (minutes[:, None, None] % 997.0) / 997.0
    cell = np.arange(LAT.size * LON.size, dtype=float).reshape(LAT.size, LON.size)
    return 4.0 * phase + 0.1 * cell[None]


def dataset(times: pd.DatetimeIndex) -> xr.Dataset:
    """A CF dataset of :func:`rate` at ``times``."""
    return xr.Dataset(
        {"rainfall_rate": (("time", "lat", "lon"), rate(times).astype(np.float32),
                           {"units": "mm h-1", "standard_name": "rainfall_rate"})},
        coords={"time": ("time", times, {"standard_name": "time"}),
                "lat": ("lat", LAT, {"standard_name": "latitude", "units": "degrees_north"}),
                "lon": ("lon", LON, {"standard_name": "longitude", "units": "degrees_east"})})


def write_day(path: Path, times: pd.DatetimeIndex, *, absent: Iterable[str] = ()) -> Path:
    """Write a day's file without the ``absent`` times (e.g. ``["2020-02-14T03:00"]``)."""
    drop = pd.DatetimeIndex([pd.Timestamp(a) for a in absent])
    kept = times[~times.isin(drop)]
    assert kept.size == times.size - drop.size, "absent times must be in the day"
    ds = dataset(kept)
    ds.to_netcdf(path, encoding={"time": {"units": "minutes since 2020-01-01", "dtype": "int64"},
                                 "rainfall_rate": {"chunksizes": (12, LAT.size, LON.size),
                                                   "zlib": True}})
    return path


def window_sum(start: str, end: str, *, ending: bool = False) -> np.ndarray:
    """Reference accumulation (mm) of :func:`rate` over a window, every 5-minute step present.

    Instantaneous values at ``start <= t < end``; values ending at their time at
    ``start < t <= end``.
    """
    times = pd.date_range(start, end, freq=STEP)
    times = times[1:] if ending else times[:-1]
    return rate(times).sum(axis=0) / 12.0
