"""Exact cell areas on the sphere and area-weighted means.

A latitude/longitude cell bounded by parallels ``phi1, phi2`` and meridians ``lam1, lam2`` has
area ``R**2 * (lam2 - lam1) * (sin(phi2) - sin(phi1))`` exactly (angles in radians). All
conservative weights in this package are built from that formula, so they are exact up to
floating-point rounding (no polygon approximations).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hpc_workflows.regrid.errors import GridError
from hpc_workflows.regrid.grids import derive_bounds, lon_bounds_increasing

__all__ = ["EARTH_RADIUS_M", "area_weighted_mean", "cell_areas", "lat_band_factor",
           "lon_width_deg"]

#: Sphere radius used for areas in m**2 (only the ratio of areas matters for weights).
EARTH_RADIUS_M = 6371229.0


def lat_band_factor(lat_bnds: np.ndarray) -> np.ndarray:
    """``|sin(phi2) - sin(phi1)|`` for each (n, 2) latitude edge pair (degrees)."""
    b = np.radians(np.clip(np.asarray(lat_bnds, dtype=np.float64), -90.0, 90.0))
    return np.abs(np.sin(b[:, 1]) - np.sin(b[:, 0]))


def lon_width_deg(lon_bnds: np.ndarray) -> np.ndarray:
    """Width in degrees (0 < w <= 360) of each (n, 2) longitude edge pair."""
    west, east = lon_bounds_increasing(lon_bnds)
    return east - west


def cell_areas(lat_bnds: np.ndarray, lon_bnds: np.ndarray,
               radius: float = EARTH_RADIUS_M) -> np.ndarray:
    """Exact areas (nlat, nlon) in m**2 of the cells of a 1-D lat/lon grid.

    Parameters
    ----------
    lat_bnds, lon_bnds
        (n, 2) cell edges in degrees.
    radius
        Sphere radius in metres.
    """
    return (radius ** 2) * np.outer(lat_band_factor(lat_bnds), np.radians(lon_width_deg(lon_bnds)))


def _find_coord(da: xr.DataArray, kind: str) -> str:
    names = ("lat", "latitude") if kind == "lat" else ("lon", "longitude")
    std = "latitude" if kind == "lat" else "longitude"
    for name, coord in da.coords.items():
        if coord.ndim == 1 and (coord.attrs.get("standard_name") == std or str(name) in names):
            return str(name)
    raise GridError(f"variable {da.name!r}: no 1-D {std} coordinate found; area_weighted_mean "
                    "needs a latitude/longitude grid")


def area_weighted_mean(da: xr.DataArray) -> float:
    """Mean of ``da`` over all its values, weighted by exact spherical cell area.

    Missing values (NaN) are left out of both the sum and the total area. Uses the
    ``bounds`` of the lat/lon coordinates when ``da`` carries them (``lat_bnds`` /
    ``lon_bnds`` in ``da.coords``), otherwise bounds derived from the centres.

    Parameters
    ----------
    da
        Data on a 1-D latitude/longitude grid; other dimensions (e.g. time) are averaged too.

    Returns
    -------
    float
        Area-weighted mean, NaN when every value is missing.
    """
    lat_name, lon_name = _find_coord(da, "lat"), _find_coord(da, "lon")
    lat_b = _bounds_of(da, lat_name, clip=(-90.0, 90.0))
    lon_b = _bounds_of(da, lon_name, clip=None)
    w = xr.DataArray(lat_band_factor(lat_b), dims=(da[lat_name].dims[0],))
    w = w * xr.DataArray(np.radians(lon_width_deg(lon_b)), dims=(da[lon_name].dims[0],))
    valid = da.notnull()
    num = (da.fillna(0.0).astype(np.float64) * w).sum()
    den = (valid * w).sum()
    num, den = float(num), float(den)
    return num / den if den > 0 else float("nan")


def _bounds_of(da: xr.DataArray, name: str, clip: tuple[float, float] | None) -> np.ndarray:
    bname = da[name].attrs.get("bounds")
    for candidate in (bname, f"{name}_bnds", f"{name}_bounds"):
        if candidate and candidate in da.coords and da.coords[candidate].ndim == 2:
            return np.asarray(da.coords[candidate].values, dtype=np.float64)
    return derive_bounds(np.asarray(da[name].values, dtype=np.float64), clip=clip)
