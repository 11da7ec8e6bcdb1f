"""Bilinear and nearest from lat/lon, rotated-pole, stereographic and curvilinear sources."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import xarray as xr

from hpc_workflows.regrid import parse_target_grid, read_source_grid, regrid

from .datasets import centres, km_radar_dataset, latlon_dataset


def _target_points(spec):
    t = parse_target_grid(spec)
    lon2, lat2 = np.meshgrid(t.lon, t.lat)
    return t, lat2, lon2


def test_bilinear_reproduces_linear_field_on_latlon() -> None:
    lat, lon = centres(-60, 60, 3.0), centres(100, 200, 2.5)
    lat2 = np.broadcast_to(lat[:, None], (lat.size, lon.size))
    lon2 = np.broadcast_to(lon[None, :], (lat.size, lon.size))
    ds = latlon_dataset(lat, lon, data=(2.0 * lat2 - 0.7 * lon2 + 11.0)[None])
    # Non-nested target points strictly inside the source centres.
    spec = {"kind": "explicit", "lat": list(np.arange(-56.0, 56.0, 1.7)),
            "lon": list(np.arange(102.0, 197.0, 1.3))}
    t, tlat, tlon = _target_points(spec)
    out = regrid(ds, spec, "bilinear").tas.values[0]
    np.testing.assert_allclose(out, 2.0 * tlat - 0.7 * tlon + 11.0, rtol=0, atol=1e-10)


def test_bilinear_periodic_longitude_and_polar_caps() -> None:
    lat, lon = centres(-90, 90, 10.0), centres(0, 360, 10.0)
    data = np.cos(np.radians(lon))[None, None, :] + 0.01 * lat[None, :, None]
    ds = latlon_dataset(lat, lon, data=np.array(data))
    out = regrid(ds, {"kind": "explicit", "lat": [-85.0, 0.0, 89.0], "lon": [0.0, 180.0]},
                 "bilinear").tas.values[0]
    # lon 0 lies between the centres 355 and 5: the periodic wrap averages them.
    assert abs(out[1, 0] - np.cos(np.radians(5.0))) < 1e-12
    # 89N is poleward of the last centre (85N) but inside its cell: that row's value,
    # interpolated in longitude only (held constant in latitude, never extrapolated).
    np.testing.assert_allclose(out[2], [np.cos(np.radians(5.0)) + 0.85,
                                        -np.cos(np.radians(5.0)) + 0.85], rtol=1e-12)


def test_bilinear_regional_edges() -> None:
    # Source cells 10..20N x 350..370E (centres 10.5..19.5, 350.5..369.5).
    lat, lon = centres(10, 20, 1.0), centres(-10, 10, 1.0)
    lat2 = np.broadcast_to(lat[:, None], (lat.size, lon.size))
    lon2 = np.broadcast_to(lon[None, :], (lat.size, lon.size))
    ds = latlon_dataset(lat, lon, data=(lat2 + 2 * lon2)[None])
    spec = {"kind": "explicit", "lat": [10.2, 15.0, 19.8, 20.5], "lon": [-9.8, -5.0, 5.0,
                                                                        9.8, 10.5]}
    out = regrid(ds, spec, "bilinear").tas.values[0]
    # Inside the centres: exact for a linear field; half cells at the edges: edge value;
    # outside the source cells (20.5N, 10.5E): missing.
    assert out[1, 1] == pytest.approx(15.0 + 2 * -5.0)
    assert out[1, 2] == pytest.approx(15.0 + 2 * 5.0)
    assert out[0, 1] == pytest.approx(10.5 - 10.0) and out[2, 1] == pytest.approx(19.5 - 10.0)
    assert out[1, 0] == pytest.approx(15.0 + 2 * -9.5) and out[1, 3] == pytest.approx(15.0 + 19.0)
    assert np.isnan(out[3]).all() and np.isnan(out[:, 4]).all()
    assert np.isfinite(out[:3, :4]).all()


def test_bilinear_mask_renormalises_without_spreading() -> None:
    lat, lon = centres(0, 10, 1.0), centres(0, 10, 1.0)
    data = np.full((1, 10, 10), 3.0)
    data[0, 4, 4] = np.nan
    ds = latlon_dataset(lat, lon, data=data)
    spec = {"kind": "explicit", "lat": [3.75, 4.25, 4.5, 7.0], "lon": [3.75, 4.25, 4.5, 7.0]}
    out = regrid(ds, spec, "bilinear", min_valid_fraction=0.5).tas.values[0]
    # (3.75, 3.75): the NaN point (4.5, 4.5) has weight 0.25**2; renormalised value = 3.
    assert out[0, 0] == pytest.approx(3.0)
    # (4.25, 4.25): the NaN point has weight 0.75**2 > 0.5, so valid weight 0.4375 < 0.5.
    assert np.isnan(out[1, 1])
    # (4.5, 4.5) sits on the NaN point (weight 1): missing, never 0 and never 3.
    assert np.isnan(out[2, 2])
    # (4.25, 4.5) and (4.5, 4.25) also have NaN weight 0.75: 4 missing in all.
    assert np.isnan(out).sum() == 4 and np.all(out[np.isfinite(out)] == pytest.approx(3.0))
    lenient = regrid(ds, spec, "bilinear", min_valid_fraction=0.4).tas.values[0]
    assert lenient[1, 1] == pytest.approx(3.0) and np.isnan(lenient[2, 2])


def test_rotated_pole_bilinear_is_linear_in_native_coordinates(sample_data) -> None:
    ds = xr.open_dataset(sample_data / "rotated_pole.nc")
    grid = read_source_grid(ds, "air_pressure_at_sea_level")
    assert grid.kind == "projected"
    x2, y2 = np.meshgrid(ds.grid_longitude.values.astype(float), ds.grid_latitude.values)
    ds["air_pressure_at_sea_level"] = (ds.air_pressure_at_sea_level.dims,
                                       3.0 * x2 - 2.0 * y2 + 1000.0,
                                       ds.air_pressure_at_sea_level.attrs)
    spec = {"kind": "regional", "lat": [40, 60], "lon": [-15, 15], "resolution": 1.0}
    out = regrid(ds, spec, "bilinear").air_pressure_at_sea_level.values
    # Independent reference: transform target points into the rotated frame with pyproj.
    crs = pyproj.CRS.from_cf(dict(ds.rotated_latitude_longitude.attrs))
    to_rot = pyproj.Transformer.from_crs(pyproj.CRS.from_proj4("+proj=longlat +R=6371229"),
                                         crs, always_xy=True)
    _, tlat, tlon = _target_points(spec)
    rx, ry = to_rot.transform(tlon, tlat)
    rx = np.where(rx < 300, rx + 360, rx)  # the file's grid_longitude runs 313..390
    ok = np.isfinite(out)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(out[ok], (3.0 * rx - 2.0 * ry + 1000.0)[ok], rtol=0, atol=1e-6)


def _brute_nearest(src_lat, src_lon, tlat, tlon):
    """Index of the great-circle-nearest source point for each target (haversine, O(n*m))."""
    sl, so = np.radians(src_lat.ravel()), np.radians(src_lon.ravel())
    out = []
    for la, lo in zip(np.radians(tlat.ravel()), np.radians(tlon.ravel())):
        h = np.sin((sl - la) / 2) ** 2 + np.cos(la) * np.cos(sl) * np.sin((so - lo) / 2) ** 2
        out.append(int(np.argmin(h)))
    return np.array(out)


@pytest.mark.parametrize("fname,var,spec", [
    ("orca2_votemper.nc", "votemper",
     {"kind": "regional", "lat": [-40, 40], "lon": [-60, 20], "resolution": 4.0}),
    ("toa_brightness_stereographic.nc", "data",
     {"kind": "regional", "lat": [30, 70], "lon": [-60, 20], "resolution": 4.0}),
    ("rotated_pole.nc", "air_pressure_at_sea_level",
     {"kind": "regional", "lat": [40, 60], "lon": [-10, 20], "resolution": 2.0}),
])
def test_nearest_matches_brute_force_great_circle(sample_data, fname, var, spec) -> None:
    ds = xr.open_dataset(sample_data / fname)
    grid = read_source_grid(ds, var)
    slat, slon = grid.centres_2d()
    _, tlat, tlon = _target_points(spec)
    ref = ds[var].values.reshape(-1)[_brute_nearest(slat, slon, tlat, tlon)]
    out = regrid(ds, spec, "nearest")[var].values.ravel()
    ok = np.isfinite(out)
    assert ok.mean() > 0.5
    np.testing.assert_array_equal(out[ok], ref[ok])


@pytest.mark.parametrize("fname,var", [("orca2_votemper.nc", "votemper"),
                                       ("toa_brightness_stereographic.nc", "data")])
def test_curvilinear_and_stereographic_bilinear_smooth_field(sample_data, fname, var) -> None:
    ds = xr.open_dataset(sample_data / fname)
    grid = read_source_grid(ds, var)
    assert grid.kind == ("curvilinear" if fname.startswith("orca") else "projected")
    slat, slon = grid.centres_2d()

    def field(lat, lon):
        return 10.0 + np.cos(np.radians(lat)) * np.sin(np.radians(lon)) + 0.5 * np.sin(
            np.radians(lat))

    ds[var] = (ds[var].dims, field(slat, slon))
    spec = {"kind": "regional", "lat": [30, 60], "lon": [-50, 10], "resolution": 2.0}
    out = regrid(ds, spec, "bilinear")[var].values
    _, tlat, tlon = _target_points(spec)
    ok = np.isfinite(out)
    assert ok.mean() > 0.8
    # Second-order accurate: error ~ spacing^2 * curvature, far below the field's range.
    assert np.max(np.abs(out[ok] - field(tlat, tlon)[ok])) < 2e-3
    # A constant stays exactly constant.
    ds[var] = (ds[var].dims, np.full(slat.shape, 4.5))
    const = regrid(ds, spec, "bilinear")[var].values
    np.testing.assert_allclose(const[np.isfinite(const)], 4.5, rtol=1e-12)


def test_orca_land_mask_stays_missing(sample_data) -> None:
    ds = xr.open_dataset(sample_data / "orca2_votemper.nc")
    out = regrid(ds, "global_2deg", "bilinear", min_valid_fraction=1.0).votemper
    # Europe/Asia interior (land) is missing, the open Pacific is not; no zeros appear
    # where the source has no zeros.
    assert np.isnan(float(out.sel(lat=51, lon=89, method="nearest")))
    assert np.isfinite(float(out.sel(lat=1, lon=181, method="nearest")))
    assert (out.values == 0).sum() <= (ds.votemper.values == 0).sum()


def test_nearest_latlon_regional_across_meridian() -> None:
    lat, lon = centres(40, 50, 0.5), centres(-5, 5, 0.5)  # cells 40..50N x 355..365E
    ds = latlon_dataset(lat, lon, ntime=1)
    spec = {"kind": "explicit", "lat": [39.0, 41.1, 49.9], "lon": [-6.0, -3.7, 0.1, 4.9, 6.0]}
    out = regrid(ds, spec, "nearest").tas.values[0]
    t, tlat, tlon = _target_points(spec)
    slat, slon = np.meshgrid(lat, lon, indexing="ij")
    ref = ds.tas.values[0].ravel()[_brute_nearest(slat, slon, tlat, tlon)].reshape(out.shape)
    inside = ((tlat >= 40) & (tlat <= 50)
              & ((np.mod(tlon + 180, 360) - 180 >= -5) & (np.mod(tlon + 180, 360) - 180 <= 5)))
    np.testing.assert_array_equal(np.isfinite(out), inside)
    np.testing.assert_array_equal(out[inside], ref[inside])


def _haversine(lat1, lon1, lat2, lon2):
    la1, lo1, la2, lo2 = (np.radians(a) for a in (lat1, lon1, lat2, lon2))
    return (np.sin((la2 - la1) / 2) ** 2
            + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2)


@pytest.mark.parametrize("src_lat,src_lon", [
    (np.linspace(-90, 90, 73), np.arange(144) * 2.5),            # 2.5 deg, centres on the poles
    (centres(-90, 90, 3.0)[::-1], centres(-180, 180, 3.75)),      # descending, -180..180
    (np.sort(np.random.default_rng(5).uniform(-89, 89, 40)),       # irregular spacing
     np.sort(np.random.default_rng(6).uniform(0, 360, 70))),
], ids=["poles", "descending-180", "irregular"])
def test_nearest_latlon_fast_path_is_the_great_circle_nearest(src_lat, src_lon) -> None:
    from hpc_workflows.regrid.nearest import _nearest_latlon

    rng = np.random.default_rng(1)
    tgt_lat = np.concatenate([[-90.0, -89.99, 89.97, 90.0], rng.uniform(-90, 90, 36)])
    tgt_lon = np.concatenate([[0.0, 179.99, -180.0, 359.999], rng.uniform(-180, 360, 26)])
    idx = _nearest_latlon(src_lat, src_lon, tgt_lat, tgt_lon)
    slat, slon = np.meshgrid(src_lat, src_lon, indexing="ij")
    tlat, tlon = np.meshgrid(tgt_lat, tgt_lon, indexing="ij")
    h_all = _haversine(tlat.ravel()[:, None], tlon.ravel()[:, None],
                       slat.ravel()[None, :], slon.ravel()[None, :])
    best = h_all.min(axis=1)
    chosen = h_all[np.arange(idx.size), idx]
    # Exactly the minimum distance (ties, e.g. at the poles, may pick another index).
    np.testing.assert_allclose(chosen, best, rtol=1e-12, atol=1e-18)
    unique = (np.sort(h_all, axis=1)[:, 1] - best) > 1e-12
    assert unique.mean() > 0.8
    np.testing.assert_array_equal(idx[unique], h_all.argmin(axis=1)[unique])


def test_nearest_latlon_fast_path_matches_the_kdtree_at_quarter_degree() -> None:
    from scipy.spatial import cKDTree

    from hpc_workflows.regrid.bilinear import unit_vectors
    from hpc_workflows.regrid.nearest import _nearest_latlon

    src_lat, src_lon = np.linspace(-90, 90, 721), np.arange(1440) * 0.25
    t = parse_target_grid({"kind": "explicit",  # not nested in the source
                           "lat": list(np.arange(-89.65, 90, 0.7)),
                           "lon": list(np.arange(0.13, 360, 0.7))})
    idx = _nearest_latlon(src_lat, src_lon, t.lat, t.lon)
    slat, slon = np.meshgrid(src_lat, src_lon, indexing="ij")
    tlat, tlon = np.meshgrid(t.lat, t.lon, indexing="ij")
    dist, ref = cKDTree(unit_vectors(slat, slon)).query(unit_vectors(tlat, tlon))
    same = idx == ref
    # Where they differ the two source points must be equally near (a tie).
    h = _haversine(tlat.ravel(), tlon.ravel(), slat.ravel()[idx], slon.ravel()[idx])
    h_ref = _haversine(tlat.ravel(), tlon.ravel(), slat.ravel()[ref], slon.ravel()[ref])
    np.testing.assert_allclose(h[~same], h_ref[~same], rtol=1e-9, atol=1e-16)
    assert same.mean() > 0.99



def _laea_km_radar() -> xr.Dataset:
    return km_radar_dataset(np.zeros((300, 400)), units="km")  # km: the unit conversion too


def _rotated_near_its_pole() -> xr.Dataset:
    # Rows 0.5 degree apart up to 0.25 degree from the rotated pole, columns 4 degrees apart:
    # the nearest row on the sphere is often not the row nearest in rotated latitude.
    rlat, rlon = np.arange(70.25, 90, 0.5), np.arange(-178, 180, 4.0)
    return xr.Dataset(
        {"rr": (("rlat", "rlon"), np.zeros((rlat.size, rlon.size)), {"grid_mapping": "rp"}),
         "rp": ((), 0, {"grid_mapping_name": "rotated_latitude_longitude",
                        "grid_north_pole_latitude": 60.0, "grid_north_pole_longitude": 10.0})},
        coords={"rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees"}),
                "rlon": ("rlon", rlon, {"standard_name": "grid_longitude", "units": "degrees"})})


@pytest.mark.parametrize("make,spec,km_grid", [
    (_laea_km_radar, {"kind": "regional", "lat": [50, 54], "lon": [6.5, 13.5],
                      "resolution": 0.02}, True),
    (_rotated_near_its_pole, {"kind": "regional", "lat": [35, 85], "lon": [-40, 60],
                              "resolution": 0.25}, False),
])
def test_nearest_from_projected_grids_is_the_great_circle_nearest(make, spec, km_grid) -> None:
    # Reference: a k-d tree over all source centres (chord distance orders like
    # great-circle distance), independent of the projected search under test.
    from scipy.spatial import cKDTree

    from hpc_workflows.regrid.bilinear import unit_vectors
    from hpc_workflows.regrid.methods import WEIGHT_BUILDERS
    from hpc_workflows.regrid.targets import parse_target_grid

    grid = read_source_grid(make(), "rr")
    assert grid.kind == "projected"
    target = parse_target_grid(spec)
    w = WEIGHT_BUILDERS["nearest"](grid, target).matrix
    lon2, lat2 = np.meshgrid(target.lon, target.lat)
    tpts = unit_vectors(lat2.ravel(), lon2.ravel())
    spts = unit_vectors(*grid.centres_2d())
    dist, ref = cKDTree(spts).query(tpts)
    counts = np.diff(w.indptr)
    inside = counts == 1
    assert counts.max() == 1 and 0.2 < inside.mean() < 0.95
    chosen = w.indices
    got = np.linalg.norm(spts[chosen] - tpts[inside], axis=1)
    # The chosen centre is as near as the tree's (equal up to rounding: ties).
    np.testing.assert_allclose(got, dist[inside], rtol=1e-9, atol=1e-15)
    assert (chosen == ref[inside]).mean() > 0.999
    if km_grid:  # inside the cells: within half a diagonal; outside: beyond half a spacing
        km = 6371.0
        assert dist[inside].max() * km < 0.7072 * 1.002
        assert dist[~inside].min() * km > 0.5 * 0.998
