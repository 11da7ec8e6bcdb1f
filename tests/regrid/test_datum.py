"""Projected sources are placed on the target's datum (WGS84), checked against pyproj.

A British National Grid source converted to latitude/longitude on its own datum (OSGB36)
is ~100 m off WGS84; on 1 km cells aggregated to 0.5 degrees that moves a fraction of a
percent of the cells into the neighbouring target cell. The reference here is pyproj's
EPSG:27700 -> EPSG:4326 transformation of the cell centres, assigned to target cells by
plain floor division.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest
import xarray as xr

from hpc_workflows.regrid import build_weights, parse_target_grid, read_source_grid, regrid

TARGET = {"kind": "regional", "lat": [51.0, 54.0], "lon": [-4.0, 0.0], "resolution": 0.5}

# What iris writes for the British National Grid: ellipsoid axes and projection, no datum.
IRIS_OSGB = {"grid_mapping_name": "transverse_mercator", "longitude_of_central_meridian": -2.0,
             "latitude_of_projection_origin": 49.0, "false_easting": 400000.0,
             "false_northing": -100000.0, "scale_factor_at_central_meridian": 0.9996012717,
             "semi_major_axis": 6377563.396, "semi_minor_axis": 6356256.909}


def _bng_dataset(grid_mapping: dict) -> xr.Dataset:
    x = 300_500.0 + 1000.0 * np.arange(200)
    y = 250_500.0 + 1000.0 * np.arange(250)
    values = np.arange(y.size * x.size, dtype=np.float64).reshape(1, y.size, x.size)
    return xr.Dataset(
        {"rr": (("time", "y", "x"), values, {"grid_mapping": "crs", "units": "mm"}),
         "crs": ((), 0, grid_mapping)},
        coords={"time": ("time", [0.0], {"units": "hours since 2020-01-01"}),
                "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m"}),
                "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m"})})


def _reference_cells(ds: xr.Dataset, to: str) -> np.ndarray:
    """Flat target cell of every source centre, by pyproj EPSG:27700 -> ``to``."""
    xx, yy = np.meshgrid(ds.x.values, ds.y.values)
    lon, lat = pyproj.Transformer.from_crs("EPSG:27700", to, always_xy=True).transform(xx, yy)
    iy = np.floor((lat - 51.0) / 0.5).astype(int)
    ix = np.floor((lon + 4.0) / 0.5).astype(int)
    ok = (iy >= 0) & (iy < 6) & (ix >= 0) & (ix < 8)
    return np.where(ok, iy * 8 + ix, -1).ravel()


@pytest.mark.parametrize("mapping", ["epsg_to_cf", "iris_style"])
def test_aggregate_places_bng_cells_where_pyproj_wgs84_says(mapping: str) -> None:
    gm = pyproj.CRS("EPSG:27700").to_cf() if mapping == "epsg_to_cf" else IRIS_OSGB
    ds = _bng_dataset(gm)
    wgs84 = _reference_cells(ds, "EPSG:4326")
    osgb36 = _reference_cells(ds, "EPSG:4277")
    moved = np.flatnonzero(wgs84 != osgb36)
    # The test can tell the two datums apart: cells near target edges change cell.
    assert 50 < moved.size < 0.02 * wgs84.size

    out = regrid(ds, TARGET, "aggregate", statistics=["sum", "count"])
    values = ds.rr.values.ravel()
    ref_count = np.bincount(wgs84[wgs84 >= 0], minlength=48).reshape(6, 8)
    ref_sum = np.bincount(wgs84[wgs84 >= 0], weights=values[wgs84 >= 0],
                          minlength=48).reshape(6, 8)
    # count is NaN only for target cells holding no source cell at all.
    np.testing.assert_array_equal(out.rr_count.values[0],
                                  np.where(ref_count > 0, ref_count, np.nan))
    np.testing.assert_array_equal(out.rr_sum.values[0], np.where(ref_count > 0, ref_sum, np.nan))


def test_nearest_and_bilinear_sample_the_wgs84_position() -> None:
    """A target centre's nearest source cell and its bilinear x/y are those of the WGS84
    position transformed by pyproj (EPSG:4326 -> EPSG:27700)."""
    ds = _bng_dataset(pyproj.CRS("EPSG:27700").to_cf())
    tgt = parse_target_grid({"kind": "regional", "lat": [52.2, 53.8], "lon": [-3.2, -0.8],
                             "resolution": 0.01})
    lon2, lat2 = np.meshgrid(tgt.lon, tgt.lat)
    x, y = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:27700",
                                       always_xy=True).transform(lon2, lat2)
    # Bilinear of a field linear in x and y reproduces the target's own x and y.
    field = ds.copy()
    field["rr"] = field.rr * 0.0 + (field.x + 3.0 * field.y)
    out = regrid(field, tgt, "bilinear")
    np.testing.assert_allclose(out.rr.values[0], x + 3.0 * y, rtol=0, atol=1e-4)
    # Nearest: the cell whose 1 km square holds the point (ties impossible at these points).
    ix = np.floor((x - 300_000.0) / 1000.0).astype(int)
    iy = np.floor((y - 250_000.0) / 1000.0).astype(int)
    near = regrid(ds, tgt, "nearest").rr.values[0]
    exact = iy * 200 + ix
    # The great-circle and the planar nearest centre can differ only for points almost
    # equidistant from two centres; the datum shift (~100 m) moves far more than those.
    assert np.mean(near == exact) > 0.999


def test_weights_cached_for_a_projected_grid_are_keyed_by_the_datum_rule(tmp_path: Path) -> None:
    ds = _bng_dataset(pyproj.CRS("EPSG:27700").to_cf())
    on_wgs84 = read_source_grid(ds, "rr")
    on_osgb36 = read_source_grid(ds, "rr", geodetic=pyproj.CRS("EPSG:4277").to_wkt())
    assert on_wgs84.grid_hash() != on_osgb36.grid_hash()
    tgt = parse_target_grid(TARGET)
    a = build_weights(on_wgs84, tgt, "nearest", tmp_path)
    b = build_weights(on_osgb36, tgt, "nearest", tmp_path)
    assert a.key != b.key and not b.from_cache


def test_a_template_declaring_a_datum_gets_the_source_placed_on_it(tmp_path: Path) -> None:
    """A template whose latitude_longitude grid mapping says OSGB36 is on OSGB36: the
    source is placed with pyproj EPSG:27700 -> EPSG:4277 there, and the target hash says so."""
    lat = 51.25 + 0.5 * np.arange(6)
    lon = -3.75 + 0.5 * np.arange(8)
    template = xr.Dataset(
        {"t": (("lat", "lon"), np.zeros((6, 8)), {"grid_mapping": "crs"}),
         "crs": ((), 0, pyproj.CRS("EPSG:4277").to_cf())},
        coords={"lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})})
    template.to_netcdf(tmp_path / "osgb36_grid.nc")
    tgt = parse_target_grid({"kind": "file", "path": str(tmp_path / "osgb36_grid.nc")})
    assert tgt.geodetic != "EPSG:4326"
    assert tgt.grid_hash() != parse_target_grid(TARGET).grid_hash()
    ds = _bng_dataset(pyproj.CRS("EPSG:27700").to_cf())
    cells = _reference_cells(ds, "EPSG:4277")
    ref = np.bincount(cells[cells >= 0], minlength=48).reshape(6, 8)
    out = regrid(ds, tgt, "aggregate", statistics=["count"])
    np.testing.assert_array_equal(out.rr_count.values[0], np.where(ref > 0, ref, np.nan))


def test_the_streaming_path_places_bng_cells_on_wgs84_too(tmp_path: Path) -> None:
    from hpc_workflows.regrid import regrid_file

    ds = _bng_dataset(IRIS_OSGB)
    ds.to_netcdf(tmp_path / "bng.nc")
    cells = _reference_cells(ds, "EPSG:4326")
    ref = np.bincount(cells[cells >= 0], minlength=48).reshape(6, 8)
    out = regrid_file(tmp_path / "bng.nc", tmp_path / "out.nc", TARGET, "aggregate",
                      statistics=["count"], weights_dir=tmp_path / "w")
    with xr.open_dataset(out) as o:
        np.testing.assert_array_equal(o.rr_count.values[0], np.where(ref > 0, ref, np.nan))
