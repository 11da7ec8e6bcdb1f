"""Conservative regridding against analytic references (constant, area integrals, brute force)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.regrid import area_weighted_mean, parse_target_grid, regrid
from hpc_workflows.regrid.areas import cell_areas
from hpc_workflows.regrid.grids import derive_bounds

from .datasets import centres, latlon_dataset, smooth_field


def _integral(values: np.ndarray, lat_b: np.ndarray, lon_b: np.ndarray) -> float:
    return float(np.nansum(values * cell_areas(lat_b, lon_b)))


def _brute_force(data: np.ndarray, s_lat_b, s_lon_b, t_lat_b, t_lon_b, min_frac: float):
    """Reference by explicit loops over every (target, source) cell pair (tiny grids only)."""
    ny, nx = t_lat_b.shape[0], t_lon_b.shape[0]
    out = np.full((ny, nx), np.nan)
    for i in range(ny):
        t_s, t_n = sorted(t_lat_b[i])
        for j in range(nx):
            t_w, t_e = t_lon_b[j]
            t_area = (t_e - t_w) * (np.sin(np.radians(t_n)) - np.sin(np.radians(t_s)))
            num = den = 0.0
            for k in range(s_lat_b.shape[0]):
                s_s, s_n = sorted(s_lat_b[k])
                dlat = np.sin(np.radians(min(t_n, s_n))) - np.sin(np.radians(max(t_s, s_s)))
                if dlat <= 0:
                    continue
                for m in range(s_lon_b.shape[0]):
                    s_w, s_e = s_lon_b[m]
                    dlon = 0.0
                    for shift in (-360, 0, 360):
                        dlon += max(0.0, min(t_e, s_e + shift) - max(t_w, s_w + shift))
                    if dlon > 0 and np.isfinite(data[k, m]):
                        num += dlat * dlon * data[k, m]
                        den += dlat * dlon
            if den > 0 and den >= min_frac * t_area * (1 - 1e-9):  # rounding slack
                out[i, j] = num / den
    return out


def test_global_integral_conserved_and_constant_kept() -> None:
    src_lat = centres(-90, 90, 180 / 257)
    src_lon = centres(-180, 180, 360 / 511)  # -180..180 convention on purpose
    ds = latlon_dataset(src_lat, src_lon, ntime=1)
    out = regrid(ds, "global_1deg")
    src_int = _integral(ds.tas.values[0], derive_bounds(src_lat, clip=(-90, 90)),
                        derive_bounds(src_lon))
    tgt_int = _integral(out.tas.values[0], out.lat_bnds.values, out.lon_bnds.values)
    assert abs(tgt_int - src_int) / abs(src_int) < 1e-9
    np.testing.assert_allclose(out.lat.values, np.arange(-89.5, 90, 1.0))
    np.testing.assert_allclose(out.lon.values, np.arange(0.5, 360, 1.0))
    const = latlon_dataset(src_lat, src_lon, data=np.full((1, src_lat.size, src_lon.size), 7.25))
    np.testing.assert_allclose(regrid(const, "global_1deg").tas.values, 7.25, rtol=0, atol=1e-12)


def test_poles_half_rows_and_coarse_to_fine_conserve() -> None:
    # Source centred on the poles (half-height polar rows), target finer than source.
    lat, lon = np.linspace(-90, 90, 61), np.arange(0, 360, 4.0)
    ds = latlon_dataset(lat, lon, data=smooth_field(lat, lon, ntime=1))
    out = regrid(ds, "global_0.5deg")
    src_int = _integral(ds.tas.values[0], derive_bounds(lat, clip=(-90, 90)), derive_bounds(lon))
    tgt_int = _integral(out.tas.values[0], out.lat_bnds.values, out.lon_bnds.values)
    assert abs(tgt_int - src_int) / abs(src_int) < 1e-9
    # The polar target row lies entirely in the polar source cap cells (source columns are
    # centred on 0, 4, ... so their edges are at 2 + 4k): each takes its cap cell's value.
    col = ((out.lon.values + 2.0) // 4.0).astype(int) % lon.size
    np.testing.assert_allclose(out.tas.values[0, 0], ds.tas.values[0, 0, col])
    np.testing.assert_allclose(out.tas.values[0, -1], ds.tas.values[0, -1, col])


def test_matches_brute_force_with_mask_wrap_and_descending_lat() -> None:
    # Descending source latitudes, -180..180 longitudes, target cells straddling 0/360.
    lat, lon = centres(-90, 90, 15.0)[::-1], centres(-180, 180, 20.0)
    data = smooth_field(lat, lon, ntime=1, seed=5)
    data[0, 3:6, 4:9] = np.nan
    ds = latlon_dataset(lat, lon, data=data)
    spec = {"kind": "explicit", "lat": list(np.arange(80, -90, -25.0)),
            "lon": list(np.arange(-5, 355, 30.0))}
    for frac in (0.0, 0.5, 1.0):
        out = regrid(ds, spec, min_valid_fraction=frac).tas.values[0]
        t = parse_target_grid(spec)
        ref = _brute_force(data[0], derive_bounds(lat, clip=(-90, 90)), derive_bounds(lon),
                           t.lat_bnds, t.lon_bnds, frac)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=0)
    assert np.isnan(regrid(ds, spec, min_valid_fraction=1.0).tas.values).any()


def test_longitude_convention_and_latitude_order_do_not_matter() -> None:
    lat, lon = centres(-90, 90, 3.0), centres(0, 360, 3.0)
    data = smooth_field(lat, lon, ntime=1)
    a = regrid(latlon_dataset(lat, lon, data=data), "global_6deg").tas.values
    # Same field with latitudes descending and longitudes rolled to -180..180.
    lon2 = np.where(lon >= 180, lon - 360, lon)
    order = np.argsort(lon2)
    b = regrid(latlon_dataset(lat[::-1], lon2[order], data=data[:, ::-1][:, :, order]),
               "global_6deg").tas.values
    np.testing.assert_allclose(a, b, rtol=1e-13)


def test_regional_source_and_target() -> None:
    # Source 10..50N, 350..370E (crosses 0); target inside it plus one cell sticking out.
    lat, lon = centres(10, 50, 0.5), centres(-10, 10, 0.5)
    ds = latlon_dataset(lat, lon, data=smooth_field(lat, lon, ntime=1))
    spec = {"kind": "regional", "lat": [20, 52], "lon": [-8, 8], "resolution": 2.0}
    out = regrid(ds, spec).tas.values[0]
    # Top row: 50..52N lies outside the source: missing (valid fraction 0).
    assert np.isnan(out[-1]).all() and np.isfinite(out[:-1]).all()
    # A fully covered cell equals the exact-area mean of its 4x4 source block.
    t = parse_target_grid(spec)
    i0 = np.searchsorted(lat, t.lat_bnds[0, 0])
    j0 = np.searchsorted(lon, t.lon_bnds[0, 0])
    block = ds.tas.values[0, i0:i0 + 4, j0:j0 + 4]
    w = cell_areas(derive_bounds(lat, clip=(-90, 90))[i0:i0 + 4], derive_bounds(lon)[j0:j0 + 4])
    assert abs(out[0, 0] - (block * w).sum() / w.sum()) < 1e-10
    # With 0.5 minimum coverage, a target cell half outside is still computed.
    half = regrid(ds, {"kind": "explicit", "lat": [49.0, 51.0], "lon": [0.0, 2.0]},
                  min_valid_fraction=0.5).tas.values[0]
    assert np.isfinite(half[0]).all()


def test_nan_never_becomes_zero_and_does_not_spread() -> None:
    lat, lon = centres(-90, 90, 1.0), centres(0, 360, 1.0)
    data = np.full((1, lat.size, lon.size), 5.0)
    data[0, 40:60, 100:140] = np.nan  # exactly covers 1x... whole 4-degree cells (aligned)
    out = regrid(latlon_dataset(lat, lon, data=data), "global_4deg", min_valid_fraction=0.0)
    vals = out.tas.values[0]
    assert not np.any(vals == 0.0)
    assert np.isnan(vals).sum() == 5 * 10
    np.testing.assert_allclose(vals[np.isfinite(vals)], 5.0)


def test_lazy_input_gives_lazy_identical_output() -> None:
    lat, lon = centres(-90, 90, 2.0), centres(0, 360, 2.0)
    ds = latlon_dataset(lat, lon, ntime=6)
    eager = regrid(ds, "global_5deg")
    lazy = regrid(ds.chunk(time=2), "global_5deg")
    assert lazy.tas.chunks is not None and lazy.tas.chunks[0] == (2, 2, 2)
    xr.testing.assert_allclose(eager.tas, lazy.tas.compute(), rtol=1e-14)


def test_output_cf_metadata() -> None:
    lat, lon = centres(-90, 90, 2.0), centres(0, 360, 2.0)
    ds = latlon_dataset(lat, lon)
    ds["tas"].attrs["cell_methods"] = "time: mean"
    out = regrid(ds, "global_5deg")
    assert out.tas.attrs["cell_methods"] == "time: mean area: mean"
    assert out.tas.attrs["standard_name"] == "air_temperature" and out.tas.attrs["units"] == "K"
    assert out.lat.attrs["bounds"] == "lat_bnds" and out.lon.attrs["units"] == "degrees_east"
    assert out.lat_bnds.shape == (36, 2) and out.lon_bnds.shape == (72, 2)
    assert out.attrs["hpc_workflows_regrid_method"] == "conservative"
    assert len(out.attrs["hpc_workflows_regrid_weights_sha256"]) == 64
    assert "hpc_workflows_version" in out.attrs


def test_area_weighted_mean_matches_exact_area_formula() -> None:
    t = parse_target_grid("global_1deg")
    lat2 = np.broadcast_to(t.lat[:, None], t.shape)
    da = xr.DataArray(np.sin(np.radians(lat2)) ** 2, dims=("lat", "lon"),
                      coords={"lat": t.lat, "lon": t.lon})
    # Integral of sin^2 over the sphere / 4 pi = 1/3; the centre value differs from the
    # cell mean by the midpoint-rule error (~1e-5).
    assert abs(area_weighted_mean(da) - 1.0 / 3.0) < 1e-4
    da[0, 0] = np.nan
    assert np.isfinite(area_weighted_mean(da))
    assert np.isnan(area_weighted_mean(da * np.nan))


def test_demo_sample_file_to_regional_grid(sample_data) -> None:
    ds = xr.open_dataset(sample_data / "A1B_north_america.nc", chunks={"time": 48})
    spec = {"kind": "regional", "lat": [15, 60], "lon": [225, 315], "resolution": 2.5}
    out = regrid(ds, spec)
    t0 = out.air_temperature.isel(time=0).compute()
    assert t0.shape == (18, 36) and not t0.isnull().any()
    assert out.time.size == 240 and "time_bnds" in out
    # Every 2.5 x 3.75-ish target cell is a mean of source cells: within their range.
    src = ds.air_temperature.isel(time=0).values
    assert src.min() - 1e-3 <= float(t0.min()) and float(t0.max()) <= src.max() + 1e-3


@pytest.mark.parametrize("method", ["conservative", "bilinear", "nearest"])
def test_integer_and_float32_inputs_keep_float_output(method: str) -> None:
    lat, lon = centres(-90, 90, 10.0), centres(0, 360, 10.0)
    ds = latlon_dataset(lat, lon, data=np.ones((1, lat.size, lon.size), dtype=np.int16))
    assert regrid(ds, "global_20deg", method).tas.dtype == np.float64
    ds32 = latlon_dataset(lat, lon, data=np.ones((1, lat.size, lon.size), dtype=np.float32))
    assert regrid(ds32, "global_20deg", method).tas.dtype == np.float32


def test_non_cf_dimension_order_is_accepted() -> None:
    lat, lon = centres(-90, 90, 3.0), centres(0, 360, 3.0)
    ds = latlon_dataset(lat, lon, data=smooth_field(lat, lon, ntime=2))
    ref = regrid(ds, "global_6deg").tas
    out = regrid(ds.transpose("lat", "lon", "time"), "global_6deg").tas
    assert out.dims == ("time", "lat", "lon")
    np.testing.assert_allclose(out.values, ref.values, rtol=1e-13)
