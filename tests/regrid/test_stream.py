"""regrid_file: the netCDF4 streaming path gives the same file content as regrid()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.regrid import regrid, regrid_file

from .datasets import centres, km_radar_dataset, latlon_dataset, smooth_field, with_bounds


@pytest.mark.parametrize("method", ["conservative", "bilinear", "nearest"])
def test_stream_matches_in_memory_regrid(tmp_path: Path, method: str) -> None:
    lat, lon = centres(-90, 90, 2.0)[::-1], centres(-180, 180, 2.5)
    data = smooth_field(lat, lon, ntime=7).astype(np.float32)
    data[:, 10:20, 30:50] = np.nan
    ds = with_bounds(latlon_dataset(lat, lon, data=data))
    ds["tas"].attrs["cell_methods"] = "time: mean"
    src = tmp_path / "in.nc"
    ds.to_netcdf(src, encoding={"tas": {"_FillValue": np.float32(1e20)}})
    dst = regrid_file(src, tmp_path / "out" / "o.nc", "global_5deg", method, time_chunk=3,
                      weights_dir=tmp_path / "w")
    assert dst.exists() and not list(dst.parent.glob("*.part"))
    with xr.open_dataset(src) as s, xr.open_dataset(dst) as o:
        ref = regrid(s, "global_5deg", method)
        np.testing.assert_array_equal(o.tas.values, ref.tas.values)
        assert o.tas.dtype == np.float32
        assert o.tas.attrs.get("cell_methods") == ref.tas.attrs.get("cell_methods")
        np.testing.assert_array_equal(o.lat_bnds.values, ref.lat_bnds.values)
        assert o.time.size == 7 and o.attrs["hpc_workflows_regrid_method"] == method
        assert o.attrs["hpc_workflows_regrid_weights_sha256"] == \
            ref.attrs["hpc_workflows_regrid_weights_sha256"]


def test_stream_unpacks_scaled_integers_and_fill_values(tmp_path: Path) -> None:
    lat, lon = centres(-90, 90, 3.0), centres(0, 360, 3.0)
    data = smooth_field(lat, lon, ntime=2)
    data[0, :5, :5] = np.nan
    ds = latlon_dataset(lat, lon, data=data)
    src = tmp_path / "packed.nc"
    ds.to_netcdf(src, encoding={"tas": {"dtype": "int16", "scale_factor": 0.01,
                                        "add_offset": 280.0, "_FillValue": -32767}})
    dst = regrid_file(src, tmp_path / "o.nc", "global_6deg")
    with xr.open_dataset(src) as s, xr.open_dataset(dst) as o:
        ref = regrid(s, "global_6deg")
        np.testing.assert_allclose(o.tas.values, ref.tas.values, rtol=1e-12)
        assert np.isnan(o.tas.values[0, 0, 0]) and "scale_factor" not in o.tas.attrs


@pytest.mark.parametrize("fmt", ["NETCDF3_CLASSIC", "NETCDF4"])
def test_stream_reads_unsigned_bytes_like_xarray(tmp_path: Path, fmt: str) -> None:
    # netCDF-3 has no unsigned bytes: 0..255 data (radar reflectivity) is stored as signed
    # bytes with _Unsigned = "true". Read as signed, 200 became -56.
    import netCDF4

    src = tmp_path / "u.nc"
    raw = np.random.default_rng(9).integers(0, 256, size=(3, 18, 36)).astype(np.uint8)
    raw[1, :4, :] = 255  # the fill value, as stored (-1 signed)
    with netCDF4.Dataset(src, "w", format=fmt) as nc:
        for name, size in (("time", 3), ("lat", 18), ("lon", 36)):
            nc.createDimension(name, size)
        nc.createVariable("lat", "f8", ("lat",))[:] = centres(-90, 90, 10.0)
        nc["lat"].units = "degrees_north"
        nc.createVariable("lon", "f8", ("lon",))[:] = centres(0, 360, 10.0)
        nc["lon"].units = "degrees_east"
        v = nc.createVariable("refl", "i1", ("time", "lat", "lon"), fill_value=np.int8(-1))
        v.setncatts({"_Unsigned": "true", "scale_factor": 0.5, "add_offset": -32.0})
        v.set_auto_maskandscale(False)
        v[:] = raw.view(np.int8)
    dst = regrid_file(src, tmp_path / "o.nc", "global_20deg", "conservative")
    with xr.open_dataset(src) as s, xr.open_dataset(dst) as o:
        assert float(s.refl.max()) > 60  # xarray decodes 0..254 -> -32..95
        ref = regrid(s, "global_20deg")
        np.testing.assert_allclose(o.refl.values, ref.refl.values, rtol=1e-12)
        assert np.isnan(o.refl.values[1, 0]).all() and np.isfinite(o.refl.values[0]).all()


def test_stream_projected_source(tmp_path: Path, sample_data: Path) -> None:
    dst = regrid_file(sample_data / "rotated_pole.nc", tmp_path / "rp.nc",
                      {"kind": "regional", "lat": [40, 60], "lon": [-10, 20], "resolution": 2},
                      "bilinear")
    with xr.open_dataset(dst) as o:
        assert o.air_pressure_at_sea_level.shape == (10, 15)
        assert o.air_pressure_at_sea_level.notnull().all()


@pytest.mark.parametrize("fname,var,method,spec", [
    ("rotated_pole.nc", "air_pressure_at_sea_level", "nearest",
     {"kind": "regional", "lat": [40, 60], "lon": [-10, 20], "resolution": 1}),
    ("toa_brightness_stereographic.nc", "data", "bilinear",
     {"kind": "regional", "lat": [30, 60], "lon": [-50, 10], "resolution": 2}),
    ("orca2_votemper.nc", "votemper", "bilinear", "global_5deg"),  # 4-D, curvilinear
    ("orca2_votemper.nc", "votemper", "aggregate", "global_5deg"),
])
def test_stream_projected_and_curvilinear_match_in_memory(tmp_path: Path, sample_data: Path,
                                                          fname, var, method, spec) -> None:
    kwargs = {"statistics": ["mean", "max"]} if method == "aggregate" else {}
    dst = regrid_file(sample_data / fname, tmp_path / "o.nc", spec, method, time_chunk=2,
                      **kwargs)
    with xr.open_dataset(sample_data / fname) as s, xr.open_dataset(dst) as o:
        ref = regrid(s, spec, method, **kwargs)
        for name in ref.data_vars:
            if name.endswith("_bnds"):
                continue
            np.testing.assert_array_equal(o[name].values, ref[name].values)
            assert o[name].dims == ref[name].dims
        assert np.isfinite(o[var].values).any()
        assert o.attrs["hpc_workflows_regrid_source_grid"] == \
            ref.attrs["hpc_workflows_regrid_source_grid"]


def test_stream_variables_with_grid_dims_elsewhere_match_in_memory(tmp_path: Path) -> None:
    # The chunk loop needs the grid dims last; a variable stored (y, x, time) next to one
    # stored (time, y, x) takes the whole-dataset path, chunked over time.
    ny, nx, nt = 20, 30, 7
    rng = np.random.default_rng(8)
    data = rng.normal(size=(nt, ny, nx))
    ds = xr.Dataset(
        {"a": (("time", "y", "x"), data, {"grid_mapping": "crs"}),
         "b": (("y", "x", "time"), np.moveaxis(data, 0, -1) * 2, {"grid_mapping": "crs"}),
         "crs": ((), 0, {"grid_mapping_name": "polar_stereographic",
                         "straight_vertical_longitude_from_pole": 0.0,
                         "latitude_of_projection_origin": 90.0,
                         "standard_parallel": 60.0, "false_easting": 0.0,
                         "false_northing": 0.0})},
        coords={"x": ("x", np.arange(nx) * 20e3, {"standard_name": "projection_x_coordinate",
                                                  "units": "m"}),
                "y": ("y", -3.0e6 + np.arange(ny) * 20e3,
                      {"standard_name": "projection_y_coordinate", "units": "m"})})
    src = tmp_path / "mixed.nc"
    ds.to_netcdf(src)
    spec = {"kind": "regional", "lat": [60, 64], "lon": [0, 10], "resolution": 0.5}
    dst = regrid_file(src, tmp_path / "o.nc", spec, "bilinear", variables=["a", "b"],
                      time_chunk=3)
    with xr.open_dataset(src) as s, xr.open_dataset(dst) as o:
        ref = regrid(s, spec, "bilinear", variables=["a", "b"])
        for name in ("a", "b"):
            np.testing.assert_allclose(o[name].transpose(*ref[name].dims).values,
                                       ref[name].values, rtol=1e-12)
        assert np.isfinite(o.a.values).mean() > 0.3
        np.testing.assert_allclose(o.b.transpose(*o.a.dims).values, 2 * o.a.values,
                                   rtol=1e-12)


def test_stream_projected_many_steps_streams_chunk_by_chunk(tmp_path: Path) -> None:
    # A 1 km Lambert grid with a fill value, 10 steps read 3 at a time. The whole-file
    # fallback (regrid() on xarray + dask, written by write_netcdf_atomic) loaded contiguous
    # variables as one chunk: memory grew with the number of steps (3.4 GB for 288 steps of
    # 1000 x 1200). Only that fallback imports the xarray writer.
    ny, nx, nt = 60, 80, 10
    rng = np.random.default_rng(3)
    rr = rng.gamma(0.5, 2.0, size=(nt, ny, nx)).astype(np.float32)
    rr[:, :15, :] = -1.0
    ds = km_radar_dataset(rr)
    src = tmp_path / "radar.nc"
    ds.to_netcdf(src, encoding={"rr": {"_FillValue": np.float32(-1.0)}})
    spec = {"kind": "regional", "lat": [51.75, 52.25], "lon": [9.6, 10.4], "resolution": 0.05}
    code = ("import sys; from hpc_workflows.regrid.stream import regrid_file; "
            f"regrid_file({str(src)!r}, {str(tmp_path / 'o.nc')!r}, {spec!r}, 'aggregate', "
            "statistics=['mean', 'max', 'fraction'], bands=[(0, 1), (1, 100)], time_chunk=3); "
            "print('hpc_workflows.write.netcdf' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
    with xr.open_dataset(src) as s, xr.open_dataset(tmp_path / "o.nc") as o:
        ref = regrid(s, spec, "aggregate", statistics=["mean", "max", "fraction"],
                     bands=[(0, 1), (1, 100)])
        for name in ("rr", "rr_max", "rr_fraction"):
            np.testing.assert_array_equal(o[name].values, ref[name].values)
        assert np.isnan(o.rr.values).any() and np.isfinite(o.rr.values).mean() > 0.5


def test_stream_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        regrid_file(tmp_path / "nope.nc", tmp_path / "o.nc", "global_1deg")
    src = tmp_path / "in.nc"
    latlon_dataset(centres(0, 10, 1.0), centres(0, 10, 1.0)).to_netcdf(src)
    with pytest.raises(ValueError, match="in.nc.*'tas'.*does not overlap"):
        regrid_file(src, tmp_path / "o.nc",
                    {"kind": "regional", "lat": [40, 50], "lon": [100, 110], "resolution": 1})
    with pytest.raises(ValueError, match="'cubic'"):
        regrid_file(src, tmp_path / "o.nc", "global_1deg", "cubic")
    assert not (tmp_path / "o.nc").exists() and not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_stream_with_cached_weights_imports_no_xarray_dask_or_scipy(tmp_path: Path,
                                                                     method: str) -> None:
    src = tmp_path / "in.nc"
    latlon_dataset(centres(-90, 90, 10.0), centres(0, 360, 10.0)).to_netcdf(src)
    code = ("import sys; from hpc_workflows.regrid.stream import regrid_file; "
            f"regrid_file({str(src)!r}, {str(tmp_path / 'o.nc')!r}, 'global_20deg', "
            f"{method!r}, weights_dir={str(tmp_path)!r}); "
            "print([m for m in ('xarray', 'dask', 'scipy') if m in sys.modules])")
    # The first run builds weights (scipy) and saves them (xarray); the second loads them.
    first = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                           text=True)
    assert "scipy" in first.stdout
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_concurrent_regrid_file_calls_in_threads(tmp_path: Path) -> None:
    # netCDF-C is not thread-safe: without the package's netCDF lock this crashes or fails
    # with "NetCDF: HDF error" some of the time.
    from concurrent.futures import ThreadPoolExecutor

    lat, lon = centres(-90, 90, 2.0), centres(0, 360, 2.0)
    sources = []
    for i in range(4):
        data = (smooth_field(lat, lon, ntime=12) + i).astype(np.float32)
        data[:, :3, :] = np.nan
        src = tmp_path / f"in{i}.nc"
        latlon_dataset(lat, lon, data=data).to_netcdf(src)
        sources.append(src)

    def run(i: int) -> Path:
        return regrid_file(sources[i % 4], tmp_path / f"o{i}.nc", "global_6deg",
                           ["conservative", "bilinear"][i % 2], time_chunk=2,
                           weights_dir=tmp_path / "w")

    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(run, range(8)))
    for i, dst in enumerate(outputs):
        with xr.open_dataset(sources[i % 4]) as s, xr.open_dataset(dst) as o:
            ref = regrid(s, "global_6deg", ["conservative", "bilinear"][i % 2])
            np.testing.assert_array_equal(o.tas.values, ref.tas.values)


def test_default_variables_skip_non_spatial_2d_tables(tmp_path: Path) -> None:
    ds = latlon_dataset(centres(-90, 90, 10.0), centres(0, 360, 10.0))
    ds["levels_table"] = (("time", "nv"), np.ones((2, 3)))
    out = regrid(ds, "global_20deg")
    assert out.tas.shape == (2, 9, 18) and out.levels_table.shape == (2, 3)
    src = tmp_path / "in.nc"
    ds.to_netcdf(src)
    with xr.open_dataset(regrid_file(src, tmp_path / "o.nc", "global_20deg")) as o:
        assert o.tas.shape == (2, 9, 18) and o.levels_table.shape == (2, 3)


def test_stream_aggregate_matches_in_memory(tmp_path: Path) -> None:
    lat, lon = centres(40, 50, 0.1), centres(0, 10, 0.1)
    rng = np.random.default_rng(4)
    data = rng.gamma(0.5, 3.0, size=(5, lat.size, lon.size)).astype(np.float32)
    data[rng.random(data.shape) < 0.3] = np.nan
    ds = latlon_dataset(lat, lon, data=data, name="rr")
    src = tmp_path / "radar.nc"
    ds.to_netcdf(src, encoding={"rr": {"_FillValue": np.float32(-1)}})
    spec = {"kind": "regional", "lat": [40, 50], "lon": [0, 10], "resolution": 1.0}
    kw = {"statistics": ["mean", "max", "count", "fraction"],
          "bands": [(0, 0.5), (0.5, 2), (2, np.inf)]}
    dst = regrid_file(src, tmp_path / "agg.nc", spec, "aggregate", time_chunk=2, **kw)
    with xr.open_dataset(src) as s, xr.open_dataset(dst) as o:
        ref = regrid(s, spec, "aggregate", **kw)
        for name in ("rr", "rr_max", "rr_count", "rr_fraction"):
            np.testing.assert_array_equal(o[name].values, ref[name].values, err_msg=name)
            assert o[name].attrs.get("cell_methods") == ref[name].attrs.get("cell_methods")
        np.testing.assert_array_equal(o.band_lower.values, [0, 0.5, 2])
        assert o.rr_fraction.dims == ("time", "band", "lat", "lon")
