"""Conservative regridding from curvilinear and projected grids (cells from corners),
checked against CDO remapcon and against independent spherical areas (pyproj.Geod on a
unit sphere, whose geodesics are the great circles)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyproj
import pytest
import xarray as xr

from hpc_workflows.regrid import (build_weights, parse_target_grid, read_source_grid, regrid,
                                  regrid_file)

needs_cdo = pytest.mark.skipif(shutil.which("cdo") is None,
                               reason="cdo missing: run ci/install-system-packages.sh")


def _orca(sample_data: Path, tmp: Path) -> Path:
    """ORCA2 temperature as a clean CF curvilinear file with (y, x, 4) corners."""
    with xr.open_dataset(sample_data / "orca2_votemper.nc", decode_coords=False) as o:
        ds = xr.Dataset({
            "votemper": (("y", "x"), o.votemper.values.astype(np.float32),
                         {"units": "degC", "coordinates": "nav_lat nav_lon"}),
            "nav_lat": (("y", "x"), o.nav_lat.values.astype(np.float64),
                        {"standard_name": "latitude", "units": "degrees_north",
                         "bounds": "lat_vertices"}),
            "nav_lon": (("y", "x"), o.nav_lon.values.astype(np.float64),
                        {"standard_name": "longitude", "units": "degrees_east",
                         "bounds": "lon_vertices"}),
            "lat_vertices": (("y", "x", "nv"), o.nav_lat_bnds.values),
            "lon_vertices": (("y", "x", "nv"), o.nav_lon_bnds.values)})
    path = tmp / "orca.nc"
    ds.to_netcdf(path, encoding={"votemper": {"_FillValue": np.float32(1e20)}})
    return path


def _rotated(tmp: Path) -> Path:
    """A regional rotated-pole grid (pole as the UK models'), a smooth field with a gap."""
    rlat, rlon = -10 + 0.44 * np.arange(60), 350 + 0.44 * np.arange(80)
    la, lo = np.meshgrid(np.radians(rlat), np.radians(rlon), indexing="ij")
    rng = np.random.default_rng(0)
    field = (280 + 10 * np.sin(3 * la) * np.cos(2 * lo) + rng.normal(size=la.shape))
    field = field.astype(np.float32)
    field[20:25, 30:40] = np.nan
    ds = xr.Dataset(
        {"tas": (("rlat", "rlon"), field, {"units": "K", "grid_mapping": "rotated_pole"}),
         "rotated_pole": ((), 0, {"grid_mapping_name": "rotated_latitude_longitude",
                                  "grid_north_pole_latitude": 37.5,
                                  "grid_north_pole_longitude": 177.5})},
        coords={"rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees"}),
                "rlon": ("rlon", rlon, {"standard_name": "grid_longitude",
                                        "units": "degrees"})})
    path = tmp / "rotated.nc"
    ds.to_netcdf(path, encoding={"tas": {"_FillValue": np.float32(1e20)}})
    return path


CASES = {
    # (source builder, variable, our target, the same grid for CDO)
    "curvilinear": (_orca, "votemper", "global_5deg",
                    "xsize = 72\nysize = 36\nxfirst = 2.5\nxinc = 5\nyfirst = -87.5\nyinc = 5"),
    "rotated_pole": (lambda sd, tmp: _rotated(tmp), "tas",
                     {"kind": "regional", "lat": [40, 70], "lon": [-20, 20], "resolution": 1},
                     "xsize = 40\nysize = 30\nxfirst = -19.5\nxinc = 1\nyfirst = 40.5\nyinc = 1"),
}


@needs_cdo
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_cdo_remapcon(sample_data: Path, tmp_path: Path, case: str) -> None:
    build, var, target, cdo_grid = CASES[case]
    src = build(sample_data, tmp_path)
    grid = tmp_path / "grid.txt"
    grid.write_text(f"gridtype = lonlat\n{cdo_grid}\n")
    for area_min in (0.0, 0.5):
        env = dict(os.environ, REMAP_AREA_MIN=str(area_min))
        subprocess.run(["cdo", "-s", "-O", f"remapcon,{grid}", str(src),
                        str(tmp_path / "ref.nc")], check=True, env=env, capture_output=True)
        with xr.open_dataset(tmp_path / "ref.nc") as r:
            ref = r[var].values.squeeze()
        with xr.open_dataset(src) as ds:
            ours = regrid(ds, target, "conservative",
                          min_valid_fraction=area_min)[var].values.squeeze()
        both = np.isfinite(ref) & np.isfinite(ours)
        assert both.sum() > 300
        noise = 4 * float(np.spacing(np.float32(np.nanmax(np.abs(ref)))))
        np.testing.assert_allclose(ours[both], ref[both], rtol=0, atol=noise)
        if area_min == 0.0:
            # Any valid overlap gives a value in both: the same cells are missing.
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        else:
            # CDO takes the valid fraction of the *covered* part of a target cell; we of
            # the whole cell (docs: parts outside the source count as missing). So we
            # may only have fewer values, in cells the source covers partly.
            assert not (np.isfinite(ours) & np.isnan(ref)).any()


def test_overlaps_add_up_to_independent_cell_areas(sample_data: Path, tmp_path: Path) -> None:
    """Every source cell is split among target cells without loss: sum over targets of
    weight x target area equals the cell's area from pyproj.Geod (unit sphere) to 1e-9,
    and the area integral of any field is conserved to 1e-9 relative."""
    with xr.open_dataset(_orca(sample_data, tmp_path)) as ds:
        grid = read_source_grid(ds, "votemper")
    tgt = parse_target_grid("global_2deg")
    w = build_weights(grid, tgt, "conservative")
    rows, cols, vals = w.matrix.to_coo()
    tb = np.radians(tgt.lat_bnds)
    t_area = np.outer(np.abs(np.sin(tb[:, 1]) - np.sin(tb[:, 0])),
                      np.radians(tgt.lon_bnds[:, 1] - tgt.lon_bnds[:, 0])).ravel()
    covered = np.bincount(cols, weights=vals * t_area[rows], minlength=grid.lat.size)
    geod = pyproj.Geod(a=1.0, b=1.0)
    lat_c, lon_c = grid.lat_bnds.reshape(-1, 4), grid.lon_bnds.reshape(-1, 4)
    sample = np.random.default_rng(5).choice(lat_c.shape[0], 400, replace=False)
    ref = np.array([abs(geod.polygon_area_perimeter(lon_c[i], lat_c[i])[0]) for i in sample])
    ok = ref > 0  # a few ORCA cells are degenerate (zero area)
    np.testing.assert_allclose(covered[sample][ok], ref[ok], rtol=1e-9)
    x = np.random.default_rng(6).random(grid.lat.size)
    before = np.sum(covered * x)
    after = np.sum(t_area[:, None].ravel() * np.bincount(rows, weights=vals * x[cols],
                                                        minlength=t_area.size))
    assert abs(after - before) <= 1e-9 * abs(before)


def test_streaming_path_gives_the_same_values(tmp_path: Path) -> None:
    src = _rotated(tmp_path)
    target = {"kind": "regional", "lat": [40, 70], "lon": [-20, 20], "resolution": 1}
    out = regrid_file(src, tmp_path / "o.nc", target, "conservative", weights_dir=tmp_path / "w")
    with xr.open_dataset(src) as s, xr.open_dataset(out) as o:
        np.testing.assert_array_equal(o.tas.values, regrid(s, target, "conservative").tas.values)
        assert o.tas.attrs["cell_methods"] == "area: mean"
