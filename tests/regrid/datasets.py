"""Small synthetic CF datasets for the regridding tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr


def latlon_dataset(lat: np.ndarray, lon: np.ndarray, data: np.ndarray | None = None,
                   ntime: int = 2, name: str = "tas", seed: int = 0) -> xr.Dataset:
    """CF dataset with ``name(time, lat, lon)`` float64 random data on the given centres."""
    rng = np.random.default_rng(seed)
    if data is None:
        data = 250.0 + 50.0 * rng.random((ntime, lat.size, lon.size))
    ds = xr.Dataset(
        {name: (("time", "lat", "lon"), data, {"units": "K", "standard_name": "air_temperature"})},
        coords={
            "time": ("time", np.arange(data.shape[0], dtype=float),
                     {"units": "hours since 2000-01-01", "standard_name": "time"}),
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
    )
    return ds


def centres(start: float, stop: float, step: float) -> np.ndarray:
    """Cell centres start+step/2 .. stop-step/2."""
    n = int(round((stop - start) / step))
    return start + step * (np.arange(n) + 0.5)


