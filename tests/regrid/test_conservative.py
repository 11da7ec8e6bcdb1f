"""Conservative regridding against analytic references (constant, area integrals)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.regrid import area_weighted_mean, parse_target_grid, regrid
from hpc_workflows.regrid.areas import cell_areas

from .datasets import centres, latlon_dataset


def _integral(da: xr.DataArray, lat_b: np.ndarray, lon_b: np.ndarray) -> float:
    return float(np.nansum(da.values * cell_areas(lat_b, lon_b)))


def test_global_integral_conserved_and_constant_kept() -> None:
    # Non-nested pair: 0.7 degree (centres -89.65..) -> 1 degree, global.
    lat = np.linspace(-90, 90, 181)[:-1] + 0.5  # 1 degree centres
    src_lat = centres(-90, 90, 180 / 257)
    src_lon = centres(-180, 180, 360 / 511)  # -180..180 convention on purpose
    ds = latlon_dataset(src_lat, src_lon, ntime=1)
    out = regrid(ds, "global_1deg")
    from hpc_workflows.regrid.grids import derive_bounds

    src_int = _integral(ds.tas.isel(time=0), derive_bounds(src_lat, clip=(-90, 90)),
                        derive_bounds(src_lon))
    tgt_int = _integral(out.tas.isel(time=0), out.lat_bnds.values, out.lon_bnds.values)
    assert abs(tgt_int - src_int) / abs(src_int) < 1e-9
    assert np.allclose(out.lat.values, lat)
    const = latlon_dataset(src_lat, src_lon, data=np.full((1, src_lat.size, src_lon.size), 7.25))
    oc = regrid(const, "global_1deg").tas.values
    assert np.all(np.abs(oc - 7.25) < 1e-12)


def test_area_weighted_mean_matches_exact_area_formula() -> None:
    t = parse_target_grid("global_1deg")
    lat2 = np.broadcast_to(t.lat[:, None], t.shape)
    da = xr.DataArray(np.sin(np.radians(lat2)) ** 2, dims=("lat", "lon"),
                      coords={"lat": t.lat, "lon": t.lon})
    # Integral of sin^2(phi) cos(phi) over the sphere / 2 = 1/3 exactly; the cell mean of
    # sin^2 is not the centre value, so allow the midpoint-rule error (~1e-5).
    assert abs(area_weighted_mean(da) - 1.0 / 3.0) < 1e-4
