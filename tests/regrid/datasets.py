"""Small synthetic CF datasets for the regridding tests."""

from __future__ import annotations


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




def with_bounds(ds: xr.Dataset) -> xr.Dataset:
    """Add explicit lat_bnds/lon_bnds (midpoint rule) so CDO and we use identical cells."""
    from hpc_workflows.regrid.grids import derive_bounds

    ds = ds.copy()
    ds["lat"].attrs["bounds"] = "lat_bnds"
    ds["lon"].attrs["bounds"] = "lon_bnds"
    ds["lat_bnds"] = (("lat", "nv"), derive_bounds(ds.lat.values, clip=(-90.0, 90.0)))
    ds["lon_bnds"] = (("lon", "nv"), derive_bounds(ds.lon.values))
    return ds


def smooth_field(lat: np.ndarray, lon: np.ndarray, ntime: int = 2, seed: int = 0,
                 noise: float = 1.0) -> np.ndarray:
    """Temperature-like field (ntime, nlat, nlon): large-scale waves plus white noise."""
    rng = np.random.default_rng(seed)
    la = np.radians(lat)[:, None]
    lo = np.radians(lon)[None, :]
    base = 280 + 20 * np.cos(la) * np.cos(2 * lo) + 5 * np.sin(3 * la)
    return np.stack([base + noise * rng.normal(size=base.shape) for _ in range(ntime)])
