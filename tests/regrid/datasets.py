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


def km_radar_dataset(data: np.ndarray, units: str = "m") -> xr.Dataset:
    """``rr`` on a 1 km Lambert azimuthal equal-area grid centred on 52N 10E, like a national
    radar composite: dims (time, y, x) for 3-D ``data``, (y, x) for 2-D; projection
    coordinates in ``units`` ("m" or "km")."""
    ny, nx = data.shape[-2:]
    per_km = 1000.0 if units == "m" else 1.0
    dims = ("time", "y", "x") if data.ndim == 3 else ("y", "x")
    coords = {"x": ("x", (np.arange(nx) - nx / 2) * per_km,
                    {"standard_name": "projection_x_coordinate", "units": units}),
              "y": ("y", (np.arange(ny) - ny / 2) * per_km,
                    {"standard_name": "projection_y_coordinate", "units": units})}
    if data.ndim == 3:
        coords["time"] = ("time", np.arange(data.shape[0]) * 5.0,
                          {"units": "minutes since 2020-01-01"})
    return xr.Dataset(
        {"rr": (dims, data, {"grid_mapping": "crs", "units": "mm h-1"}),
         "crs": ((), 0, {"grid_mapping_name": "lambert_azimuthal_equal_area",
                         "latitude_of_projection_origin": 52.0,
                         "longitude_of_projection_origin": 10.0,
                         "false_easting": 0.0, "false_northing": 0.0})},
        coords=coords)
