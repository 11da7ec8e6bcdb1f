"""Grid recognition: bounds are not data, containment is overlap, invalid targets say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.regrid import parse_target_grid, regrid, regrid_file
from hpc_workflows.regrid.errors import GridError, RegridError

from .datasets import centres, km_radar_dataset, latlon_dataset, with_bounds


def _nemo_like(sample_data: Path, style: str, bounds_attr: bool) -> xr.Dataset:
    """An ocean file as NEMO (``nav_lat``, ``bounds_lat(y, x, nvertex)``) or CMIP
    (``latitude``, ``vertices_latitude(j, i, vertices)``) write it, on the ORCA2 grid of
    iris-sample-data, with or without ``bounds`` attributes pointing at the corners."""
    with xr.open_dataset(sample_data / "orca2_votemper.nc", decode_coords=False) as o:
        lat, lon = o.nav_lat.values, o.nav_lon.values
        lat_b, lon_b, field = o.nav_lat_bnds.values, o.nav_lon_bnds.values, o.votemper.values
    if style == "nemo":
        ydim, xdim, vdim = "y", "x", "nvertex"
        names = ("nav_lat", "nav_lon", "bounds_lat", "bounds_lon")
    else:
        ydim, xdim, vdim = "j", "i", "vertices"
        names = ("latitude", "longitude", "vertices_latitude", "vertices_longitude")
    nt = 3
    ds = xr.Dataset({
        "tos": (("time", ydim, xdim), np.repeat(field[None], nt, axis=0),
                {"standard_name": "sea_surface_temperature", "units": "degC",
                 "coordinates": f"{names[0]} {names[1]}"}),
        names[0]: ((ydim, xdim), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        names[1]: ((ydim, xdim), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        names[2]: ((ydim, xdim, vdim), lat_b),
        names[3]: ((ydim, xdim, vdim), lon_b),
        "time": ("time", np.arange(nt, dtype=float), {"units": "days since 2000-01-01"}),
    })
    if bounds_attr:
        ds[names[0]].attrs["bounds"] = names[2]
        ds[names[1]].attrs["bounds"] = names[3]
    return ds


@pytest.mark.parametrize("style", ["nemo", "cmip"])
@pytest.mark.parametrize("bounds_attr", [True, False])
def test_ocean_cell_corners_are_never_regridded_as_data(sample_data: Path, tmp_path: Path,
                                                        style: str, bounds_attr: bool) -> None:
    src = tmp_path / f"{style}.nc"
    _nemo_like(sample_data, style, bounds_attr).to_netcdf(src)
    with xr.open_dataset(src) as ds:
        out = regrid(ds, "global_5deg", "bilinear")
        regridded = [v for v in out.data_vars if {"lat", "lon"} <= set(out[v].dims)]
        assert regridded == ["tos"]
        assert np.isfinite(out.tos.values).mean() > 0.3
    dst = regrid_file(src, tmp_path / "out.nc", "global_5deg", "nearest")
    with xr.open_dataset(dst) as o:
        assert [v for v in o.data_vars if {"lat", "lon"} <= set(o[v].dims)] == ["tos"]


def test_preprocess_regrids_a_nemo_file_without_naming_its_variables(sample_data: Path,
                                                                     tmp_path: Path) -> None:
    """The pipeline's step picks the data with the regridder's rule (it passed every
    variable of 2 or more dimensions, bounds_lon included)."""
    from hpc_workflows.preprocess import PreprocessSettings, preprocess_file

    src = tmp_path / "nemo.nc"
    _nemo_like(sample_data, "nemo", bounds_attr=False).to_netcdf(src)
    result = preprocess_file(src, tmp_path / "out.nc",
                             PreprocessSettings(target="global_5deg", method="nearest"),
                             input_sha256="0" * 64)
    assert result.variables == ["tos"]


def _one_cell(lon_bnds: list[float], lat_bnds: list[float] = (-90.0, 90.0)) -> dict:
    return {"kind": "explicit", "lat": [float(np.mean(lat_bnds))],
            "lon": [float(np.mean(lon_bnds))], "lat_bnds": [list(lat_bnds)],
            "lon_bnds": [lon_bnds]}


@pytest.mark.parametrize("lon_bnds", [[0.0, 360.0], [-180.0, 180.0], [0.0, 200.0],
                                      [-100.0, 120.0]])
def test_a_target_cell_containing_the_whole_source_domain_overlaps_it(lon_bnds) -> None:
    lat, lon = centres(40, 60, 2.0), centres(0, 30, 2.5)
    ds = latlon_dataset(lat, lon, ntime=2)
    tgt = _one_cell(lon_bnds)
    agg = regrid(ds, tgt, "aggregate", min_valid_fraction=0.0)
    np.testing.assert_allclose(agg.tas.values[:, 0, 0], ds.tas.mean(("lat", "lon")).values,
                               rtol=1e-12)
    con = regrid(ds, tgt, "conservative", min_valid_fraction=0.0)
    w = np.cos(np.radians(lat))[:, None] * np.ones(lon.size)
    # Exact cell areas go with sin(north) - sin(south), which the cosine of the centre
    # approximates to ~1e-4 relative on 2-degree rows: compare at that level.
    ref = (ds.tas.values * w).sum(axis=(1, 2)) / w.sum()
    np.testing.assert_allclose(con.tas.values[:, 0, 0], ref, rtol=1e-5)
    radar = km_radar_dataset(np.ones((1, 40, 50)))
    out = regrid(radar, tgt, "aggregate")
    assert out.rr.values[0, 0, 0] == 1.0


def test_point_methods_say_the_grids_overlap_but_no_target_centre_is_inside() -> None:
    ds = latlon_dataset(centres(10.2, 10.8, 0.1), centres(20.2, 20.8, 0.1), ntime=1)
    for method in ("bilinear", "nearest"):
        with pytest.raises(RegridError) as err:
            regrid(ds, "global_10deg", method)
        msg = str(err.value)
        assert "does not overlap" not in msg and "'aggregate'" in msg and "centre" in msg
    with pytest.raises(RegridError, match="does not overlap"):
        regrid(ds, {"kind": "regional", "lat": [-50, -40], "lon": [100, 110],
                    "resolution": 1}, "nearest")


def test_a_template_with_nan_bounds_is_rejected_as_invalid(tmp_path: Path) -> None:
    tmpl = with_bounds(latlon_dataset(centres(-90, 90, 10.0), centres(0, 360, 10.0), ntime=1))
    tmpl["lat_bnds"][3, 1] = np.nan
    tmpl.to_netcdf(tmp_path / "grid.nc")
    spec = {"kind": "file", "path": str(tmp_path / "grid.nc")}
    with pytest.raises(GridError) as err:
        parse_target_grid(spec)
    msg = str(err.value)
    assert "invalid" in msg and "lat_bnds" in msg and "NaN" in msg and "grid.nc" in msg
    assert "overlap" not in msg
    src = tmp_path / "in.nc"
    latlon_dataset(centres(-90, 90, 5.0), centres(0, 360, 5.0)).to_netcdf(src)
    with pytest.raises(GridError, match="invalid: lat_bnds"):
        regrid_file(src, tmp_path / "o.nc", spec)
    with pytest.raises(GridError, match="invalid: lon_bnds"):
        parse_target_grid({"kind": "explicit", "lat": [0.0, 10.0], "lon": [0.0, 10.0],
                           "lon_bnds": [[-5.0, 5.0], [5.0, float("nan")]]})
