"""CF-clean source files as the centres' tools write them (iris-style metadata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from hpc_workflows.regrid.grids import derive_bounds


def _no_fill(ds: xr.Dataset) -> dict[str, dict]:
    """Encoding with no _FillValue on coordinates and bounds (CF 2.5.1, 7.1)."""
    return {str(n): {"_FillValue": None} for n in ds.variables if n not in ds.data_vars
            or str(n).endswith("_bnds") or n == "surface_altitude"}


def model_level_file(path: Path, ntime: int = 6, nlat: int = 36, nlon: int = 48) -> Path:
    """``ta(time, model_level_number, lat, lon)`` on hybrid height levels, with the scalar
    and auxiliary coordinates a forecast file carries: ``height``-like scalar
    ``forecast_reference_time``, ``forecast_period(time)``, ``level_height``/``sigma`` and
    the horizontal ``surface_altitude`` named by ``formula_terms``; plus a 2-D
    ``tas(time, lat, lon)`` with a scalar ``height``."""
    lat = -90.0 + (180.0 / nlat) * (np.arange(nlat) + 0.5)
    lon = (360.0 / nlon) * (np.arange(nlon) + 0.5)
    nlev = 3
    rng = np.random.default_rng(1)
    t = np.arange(ntime, dtype=np.float64) * 1.0 + 1.0
    ds = xr.Dataset(
        {
            "ta": (("time", "model_level_number", "lat", "lon"),
                   (250 + 30 * rng.random((ntime, nlev, nlat, nlon))).astype(np.float32),
                   {"standard_name": "air_temperature", "units": "K",
                    "cell_methods": "time: mean",
                    "coordinates": "forecast_period forecast_reference_time level_height "
                                   "sigma surface_altitude"}),
            "tas": (("time", "lat", "lon"),
                    (270 + 20 * rng.random((ntime, nlat, nlon))).astype(np.float32),
                    {"standard_name": "air_temperature", "units": "K",
                     "cell_methods": "time: mean",
                     "coordinates": "forecast_period forecast_reference_time height"}),
            "time_bnds": (("time", "bnds"), np.stack([t - 1.0, t], axis=1)),
            "lat_bnds": (("lat", "bnds"), derive_bounds(lat, clip=(-90.0, 90.0))),
            "lon_bnds": (("lon", "bnds"), derive_bounds(lon)),
            "surface_altitude": (("lat", "lon"),
                                 (500.0 * rng.random((nlat, nlon))).astype(np.float32),
                                 {"standard_name": "surface_altitude", "units": "m"}),
            "level_height": (("model_level_number",), np.array([20.0, 100.0, 300.0]),
                             {"long_name": "level_height", "units": "m", "positive": "up",
                              "standard_name": "atmosphere_hybrid_height_coordinate",
                              "axis": "Z", "formula_terms": "a: level_height b: sigma "
                                                            "orog: surface_altitude"}),
            "sigma": (("model_level_number",), np.array([0.99, 0.95, 0.8]),
                      {"long_name": "sigma", "units": "1"}),
            "forecast_period": (("time",), t,
                                {"standard_name": "forecast_period", "units": "hours"}),
            "forecast_reference_time": ((), 0.0,
                                        {"standard_name": "forecast_reference_time",
                                         "units": "hours since 2020-01-01 00:00:00"}),
            "height": ((), 1.5, {"standard_name": "height", "units": "m", "positive": "up",
                                 "axis": "Z"}),
        },
        coords={
            "time": ("time", t, {"standard_name": "time", "units": "hours since 2020-01-01",
                                 "calendar": "standard", "axis": "T", "bounds": "time_bnds"}),
            "model_level_number": ("model_level_number", np.arange(1, nlev + 1, dtype=np.int32),
                                   {"standard_name": "model_level_number", "units": "1",
                                    "positive": "up"}),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north",
                                 "axis": "Y", "bounds": "lat_bnds"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east",
                                 "axis": "X", "bounds": "lon_bnds"}),
        },
        attrs={"Conventions": "CF-1.8", "title": "synthetic forecast",
               "history": "written by the hpc_workflows tests",
               "institution": "test", "source": "test"},
    )
    # Decoded or not, xarray must write the attributes as given.
    ds.to_netcdf(path, encoding=_no_fill(ds))
    return path
