"""Reading source grids from CF files, checked against independent references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from hpc_workflows.regrid import read_source_grid
from hpc_workflows.regrid.grids import derive_bounds

from .datasets import centres, latlon_dataset, with_bounds


def test_derive_bounds_midpoints_and_pole_clipping() -> None:
    np.testing.assert_allclose(derive_bounds(np.array([-90.0, -45.0, 0.0, 45.0, 90.0]),
                                             clip=(-90, 90)),
                               [[-90, -67.5], [-67.5, -22.5], [-22.5, 22.5], [22.5, 67.5],
                                [67.5, 90]])
    np.testing.assert_allclose(derive_bounds(np.array([10.0, 5.0, 0.0])),
                               [[12.5, 7.5], [7.5, 2.5], [2.5, -2.5]])


def test_latlon_grid_uses_file_bounds_when_present(tmp_path: Path) -> None:
    ds = with_bounds(latlon_dataset(centres(-90, 90, 30.0), centres(0, 360, 60.0)))
    ds["lat_bnds"] = ds.lat_bnds + 0.0
    ds["lat_bnds"].values[0, 0] = -89.0  # distinguishable from the derived value -90
    path = tmp_path / "b.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path) as opened:
        grid = read_source_grid(opened, "tas")
    assert grid.kind == "latlon" and not grid.bounds_derived
    assert grid.lat_bnds[0, 0] == -89.0
    derived = read_source_grid(latlon_dataset(centres(-90, 90, 30.0), centres(0, 360, 60.0)),
                               "tas")
    assert derived.bounds_derived and derived.lat_bnds[0, 0] == -90.0


def _unrotate(rlon: np.ndarray, rlat: np.ndarray, pole_lon: float, pole_lat: float):
    """Rotated-pole to geographic coordinates by the textbook spherical rotation."""
    rlon, rlat = np.radians(rlon), np.radians(rlat)
    x = np.cos(rlat) * np.cos(rlon)
    y = np.cos(rlat) * np.sin(rlon)
    z = np.sin(rlat)
    # Tilt the rotated frame about y so its pole sits at latitude pole_lat (the rotated
    # origin then lies at latitude 90 - pole_lat), then turn about z to longitude pole_lon.
    theta = -np.radians(90.0 - pole_lat)
    phi = np.radians(pole_lon - 180.0)
    x2 = np.cos(theta) * x + np.sin(theta) * z
    z2 = -np.sin(theta) * x + np.cos(theta) * z
    x3 = np.cos(phi) * x2 - np.sin(phi) * y
    y3 = np.sin(phi) * x2 + np.cos(phi) * y
    return np.degrees(np.arctan2(y3, x3)), np.degrees(np.arcsin(np.clip(z2, -1, 1)))


def test_rotated_pole_matches_spherical_rotation(sample_data: Path) -> None:
    ds = xr.open_dataset(sample_data / "rotated_pole.nc")
    grid = read_source_grid(ds, "air_pressure_at_sea_level")
    assert grid.kind == "projected" and grid.shape == (22, 36)
    gm = ds.rotated_latitude_longitude.attrs
    rlon, rlat = np.meshgrid(ds.grid_longitude.values.astype(float),
                             ds.grid_latitude.values.astype(float))
    lon, lat = _unrotate(rlon, rlat, gm["grid_north_pole_longitude"],
                         gm["grid_north_pole_latitude"])
    np.testing.assert_allclose(grid.lat, lat, atol=1e-9)
    dlon = np.mod(grid.lon - lon + 180.0, 360.0) - 180.0
    np.testing.assert_allclose(dlon, 0.0, atol=1e-9)
    assert grid.lat_bnds.shape == (22, 36, 4)


def test_stereographic_matches_files_own_lat_lon(sample_data: Path) -> None:
    ds = xr.open_dataset(sample_data / "toa_brightness_stereographic.nc")
    grid = read_source_grid(ds, "data")
    assert grid.kind == "projected"
    # The file carries 2-D lat/lon computed by its producer: an independent reference.
    ok = np.isfinite(ds.lat.values) & (np.abs(ds.lat.values) <= 90)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(grid.lat[ok], ds.lat.values[ok], atol=1e-3)
    dlon = np.mod(grid.lon[ok] - ds.lon.values[ok] + 180.0, 360.0) - 180.0
    assert np.max(np.abs(dlon)) < 1e-3


def test_curvilinear_orca_reads_2d_coords_and_bounds(sample_data: Path) -> None:
    ds = xr.open_dataset(sample_data / "orca2_votemper.nc")
    grid = read_source_grid(ds, "votemper")
    assert grid.kind == "curvilinear" and grid.shape == (148, 180)
    np.testing.assert_array_equal(grid.lat, ds.nav_lat.values.astype(float))
    assert grid.lat_bnds.shape == (148, 180, 4) and not grid.bounds_derived


def test_grid_hash_depends_on_coordinates_only() -> None:
    a = read_source_grid(latlon_dataset(centres(-90, 90, 30.0), centres(0, 360, 60.0)), "tas")
    b = read_source_grid(latlon_dataset(centres(-90, 90, 30.0), centres(0, 360, 60.0),
                                        seed=9), "tas")
    c = read_source_grid(latlon_dataset(centres(-90, 90, 30.0), centres(0, 360, 45.0)), "tas")
    assert a.grid_hash() == b.grid_hash() != c.grid_hash()
