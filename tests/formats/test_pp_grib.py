"""PP and GRIB2 sample files (iris-sample-data) to CF netCDF, checked against independent
readings: a numpy parse of the PP header and data, and ecCodes' own decoding of the GRIB."""

from __future__ import annotations

import shutil

import numpy as np
import pyproj
import xarray as xr

from hpc_workflows.formats import check_readable, detect, to_netcdf


def _pp_field(path):
    """The first PP field by the UMDP F3 layout: 45 int words, 19 real words, then data."""
    raw = path.read_bytes()
    ints = np.frombuffer(raw, ">i4", count=45, offset=4)
    reals = np.frombuffer(raw, ">f4", count=19, offset=4 + 45 * 4)
    rows, cols, lbpack = int(ints[17]), int(ints[18]), int(ints[20])
    assert lbpack == 0, "the sample is unpacked; a packed field would need WGDOS decoding"
    data = np.frombuffer(raw, ">f4", count=rows * cols, offset=4 + 256 + 4 + 4).reshape(rows, cols)
    bzy, bdy, bzx, bdx, bmdi = (float(reals[i]) for i in (13, 14, 15, 16, 17))
    return {
        "data": np.where(data == bmdi, np.nan, data),
        "lat": bzy + bdy * np.arange(1, rows + 1),
        "lon": bzx + bdx * np.arange(1, cols + 1),
        "t1": tuple(int(v) for v in ints[0:5]),  # LBYR..LBMIN: start of the meaning period
        "t2": tuple(int(v) for v in ints[6:11]),  # LBYRD..LBMIND: its end
        "calendar": {1: "proleptic_gregorian", 2: "360_day"}.get(int(ints[12]) % 10),
    }


def test_pp_converts_with_values_grid_time_and_calendar(tmp_path, sample_data):
    src = tmp_path / "surface_temperature.nc"  # a misleading name on purpose
    shutil.copyfile(sample_data / "air_temp.pp", src)
    assert detect(src) == "pp" and check_readable(src) == "pp"
    out = tmp_path / "pp.nc"
    assert to_netcdf(src, out) == "pp"
    truth = _pp_field(src)
    with xr.open_dataset(out, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
        da = ds["air_temperature"]
        assert da.attrs["units"] == "K" and da.attrs["standard_name"] == "air_temperature"
        np.testing.assert_array_equal(da.values[0], truth["data"])
        np.testing.assert_allclose(ds["latitude"].values, truth["lat"], atol=1e-4)
        np.testing.assert_allclose(ds["longitude"].values, truth["lon"], atol=1e-4)
        assert ds["time"].encoding["calendar"] == truth["calendar"] == "360_day"
        bounds = ds[ds["time"].attrs["bounds"]].values[0]
        assert [(b.year, b.month, b.day, b.hour, b.minute) for b in bounds] == [truth["t1"], truth["t2"]]
        assert "forecast_reference_time" in ds.coords and ds["forecast_reference_time"].dims == ("time",)
        assert float(ds["pressure"]) == 1000.0 and ds["pressure"].attrs["units"] == "hPa"
        assert "time: mean" in da.attrs["cell_methods"]


def test_grib2_converts_as_eccodes_decodes_it(tmp_path, sample_data):
    import eccodes

    src = sample_data / "polar_stereo.grib2"
    assert detect(src) == "grib" and check_readable(src) == "grib"
    out = tmp_path / "grib.nc"
    assert to_netcdf(src, out) == "grib"
    with open(src, "rb") as fh:
        gid = eccodes.codes_grib_new_from_file(fh)
        try:
            key = lambda k: eccodes.codes_get(gid, k)  # noqa: E731
            nx, ny = key("Nx"), key("Ny")
            assert key("jScansPositively") == 1 and key("iScansNegatively") == 0
            values = eccodes.codes_get_values(gid).reshape(ny, nx)
            first = (key("longitudeOfFirstGridPointInDegrees"), key("latitudeOfFirstGridPointInDegrees"))
            dx, date, hour, step = key("DxInMetres"), str(key("dataDate")), key("dataTime"), key("forecastTime")
        finally:
            eccodes.codes_release(gid)
    with xr.open_dataset(out) as ds:
        da = ds["air_temperature"]
        assert da.attrs["units"] == "K"
        np.testing.assert_allclose(da.values[0], values, rtol=0, atol=1e-6)
        x, y = ds["projection_x_coordinate"].values, ds["projection_y_coordinate"].values
        np.testing.assert_allclose(np.diff(x), dx)
        crs = pyproj.CRS.from_cf(ds[da.attrs["grid_mapping"]].attrs)
        lon, lat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x[0], y[0])
        np.testing.assert_allclose([lon % 360, lat], first, atol=1e-5)
        reference = np.datetime64(f"{date[:4]}-{date[4:6]}-{date[6:]}T{hour // 100:02d}:{hour % 100:02d}")
        assert ds["forecast_reference_time"].values[0] == reference
        assert ds["time"].values[0] == reference + np.timedelta64(step, "h")
        assert int(ds["forecast_period"].values[0]) == step


def test_model_levels_keep_static_orography_and_one_z_axis(tmp_path, sample_data):
    """uk_hires.pp: theta on 3 times x 7 hybrid-height levels, plus orography. The orography
    stays static (no length-1 time of its own), only the level number carries ``axis: Z``,
    and no variable is int64 (CF 1.8 types)."""
    import netCDF4

    out = tmp_path / "uk.nc"
    to_netcdf(sample_data / "uk_hires.pp", out)
    with netCDF4.Dataset(out) as nc:
        assert nc["air_potential_temperature"].dimensions[:2] == ("time", "model_level_number")
        assert nc["level_height"].getncattr("formula_terms").startswith("a: level_height b: sigma")
        orography = [v for v in nc.variables.values() if getattr(v, "standard_name", "") == "surface_altitude"]
        assert orography and all(v.dimensions == ("grid_latitude", "grid_longitude") for v in orography)
        assert [n for n, v in nc.variables.items() if getattr(v, "axis", None) == "Z"] == ["model_level_number"]
        assert not [n for n, v in nc.variables.items() if v.dtype == np.int64]


def test_grib_and_nimrod_times_are_not_int64(tmp_path, sample_data):
    import datetime as dt

    import netCDF4

    from tests.formats.nimrod_files import write_nimrod

    radar = write_nimrod(tmp_path / "r", np.zeros((3, 4), "int16"), validity=dt.datetime(2020, 2, 14))
    for src in (sample_data / "polar_stereo.grib2", radar):
        out = tmp_path / f"{src.name}.nc"
        to_netcdf(src, out)
        with netCDF4.Dataset(out) as nc:
            assert not [n for n, v in nc.variables.items() if v.dtype == np.int64], src.name


def test_grib1_from_ecCodes_sample_keeps_values_grid_and_reference_time(tmp_path):
    """A GRIB 1 message made from the GRIB1 sample ecCodes ships (no download), with known
    values, grid and times: converted values, coordinates and forecast_reference_time (which
    iris-grib does not give for GRIB 1; derived as time - forecast_period) match."""
    import eccodes

    values = 270.0 + np.arange(40, dtype="float64")
    gid = eccodes.codes_grib_new_from_samples("GRIB1")
    try:
        for key, value in dict(Ni=8, Nj=5, latitudeOfFirstGridPointInDegrees=60.0,
                               longitudeOfFirstGridPointInDegrees=0.0,
                               latitudeOfLastGridPointInDegrees=40.0,
                               longitudeOfLastGridPointInDegrees=35.0,
                               iDirectionIncrementInDegrees=5.0, jDirectionIncrementInDegrees=5.0,
                               dataDate=20200214, dataTime=1200, stepRange="6").items():
            eccodes.codes_set(gid, key, value)
        eccodes.codes_set_values(gid, values)
        src = tmp_path / "model_output"
        with open(src, "wb") as fh:
            eccodes.codes_write(gid, fh)
    finally:
        eccodes.codes_release(gid)
    assert detect(src) == "grib" and check_readable(src) == "grib"
    out = tmp_path / "g1.nc"
    to_netcdf(src, out)
    with xr.open_dataset(out) as ds:
        (name,) = [n for n in ds.data_vars if ds[n].ndim == 3]
        np.testing.assert_allclose(ds[name].values[0], values.reshape(5, 8), atol=1e-3)
        np.testing.assert_array_equal(ds["latitude"].values, [60.0, 55.0, 50.0, 45.0, 40.0])
        np.testing.assert_array_equal(ds["longitude"].values, np.arange(0.0, 40.0, 5.0))
        assert ds["time"].values[0] == np.datetime64("2020-02-14T18:00")
        assert ds["forecast_reference_time"].values[0] == np.datetime64("2020-02-14T12:00")


def test_little_endian_pp_reads_like_the_big_endian_file(tmp_path, sample_data):
    """air_temp.pp with every 4-byte word byte-swapped (all its words are 4 bytes) is the
    little-endian PP some tools write: same format name, same values."""
    raw = (sample_data / "air_temp.pp").read_bytes()
    little = tmp_path / "little.pp"
    little.write_bytes(np.frombuffer(raw, ">u4").astype("<u4").tobytes())
    assert detect(little) == "pp"
    to_netcdf(sample_data / "air_temp.pp", tmp_path / "big.nc")
    to_netcdf(little, tmp_path / "little.nc")
    with xr.open_dataset(tmp_path / "big.nc") as big, xr.open_dataset(tmp_path / "little.nc") as lil:
        np.testing.assert_array_equal(lil["air_temperature"].values, big["air_temperature"].values)


def test_fieldsfile_headers_are_recognised(tmp_path):
    """Fieldsfile fixed headers (no sample file ships, so only recognition is checked here):
    64-bit first word 20 (post 5.2), 15 (pre 3.1), -32768 (ancillary), 32-bit 20 (ieee -32)."""
    for i, head in enumerate([np.array([20], ">i8"), np.array([15], ">i8"),
                              np.array([-32768], ">i8"), np.array([20], ">i4")]):
        path = tmp_path / f"ff{i}"
        path.write_bytes(head.tobytes() + bytes(256))
        assert detect(path) == "pp", head
