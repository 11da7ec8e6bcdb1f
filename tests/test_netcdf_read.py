"""read_into: netCDF-C reads into a caller's buffer give exactly what netCDF4-python reads,
and every case it cannot vouch for is refused rather than guessed."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from hpc_workflows.netcdf_read import read_into


def _write(path: Path, fmt: str = "NETCDF4") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    values = {
        "f4": rng.normal(size=(5, 3, 4)).astype(np.float32),
        "f8": rng.normal(size=(5, 3, 4)),
        "i2": rng.integers(-3000, 3000, size=(5, 3, 4)).astype(np.int16),
        "i1": rng.integers(-100, 100, size=(5, 3, 4)).astype(np.int8),
        "four_d": rng.normal(size=(5, 2, 3, 4)).astype(np.float32),
    }
    if fmt == "NETCDF4":
        values["u1"] = rng.integers(0, 255, size=(5, 3, 4)).astype(np.uint8)
        values["i8"] = rng.integers(-2**40, 2**40, size=(5, 3, 4))
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        for name, size in (("t", 5), ("z", 2), ("y", 3), ("x", 4)):
            nc.createDimension(name, size)
        for name, a in values.items():
            dims = ("t", "z", "y", "x") if a.ndim == 4 else ("t", "y", "x")
            # A fill value that occurs in the data: read_into must not mask anything.
            v = nc.createVariable(name, a.dtype, dims, fill_value=a.flat[3])
            v[:] = a
        if fmt == "NETCDF4":
            g = nc.createGroup("sub")
            v = g.createVariable("in_group", "f4", ("t", "y", "x"))
            v[:] = values["f4"] * 2
            values["sub/in_group"] = values["f4"] * 2
    return values


@pytest.mark.parametrize("fmt", ["NETCDF4", "NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET"])
def test_blocks_equal_netcdf4_python_reads(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "v.nc"
    values = _write(path, fmt)
    with netCDF4.Dataset(path) as nc:
        for name, expected in values.items():
            var = nc[name]
            var.set_auto_maskandscale(False)
            for i0, i1 in ((0, 2), (2, 5), (4, 5), (0, 5)):
                buf = np.full((i1 - i0,) + expected.shape[1:], 99, dtype=var.dtype)
                start = (i0,) + (0,) * (var.ndim - 1)
                assert read_into(var, start, buf), name
                np.testing.assert_array_equal(buf, var[i0:i1])
                np.testing.assert_array_equal(buf, expected[i0:i1])


def test_refuses_what_it_cannot_vouch_for(tmp_path: Path) -> None:
    path = tmp_path / "v.nc"
    _write(path)
    with netCDF4.Dataset(path, "a") as nc:
        be = nc.createVariable("big_endian", np.dtype(">f4"), ("t", "y", "x"), endian="big")
        be[:] = np.ones((5, 3, 4))
        nc.createVariable("text", str, ("t",))
    nc = netCDF4.Dataset(path)
    var = nc["f4"]
    var.set_auto_maskandscale(False)
    ok = np.zeros((2, 3, 4), np.float32)
    untouched = [
        (var, (0, 0, 0), np.zeros((2, 3, 4), np.float64)),  # wrong dtype
        (var, (0, 0, 0), np.zeros((2, 4, 3), np.float32).transpose(0, 2, 1)),  # not C order
        (var, (0, 0, 0), np.zeros((2, 3), np.float32)),  # wrong rank
        (var, (4, 0, 0), ok),  # runs past the end
        (var, (0, 0), ok),  # start of the wrong rank
        (nc["big_endian"], (0, 0, 0), ok.astype(">f4")),  # not native byte order
        (nc["text"], (0,), np.zeros(2, dtype=object)),  # not numeric
    ]
    for v, start, buf in untouched:
        before = buf.copy()
        assert not read_into(v, start, buf)
        np.testing.assert_array_equal(buf, before)
    nc.close()
    # The file is closed, and a file opened since may hold its id: refuse, do not crash.
    with netCDF4.Dataset(path):
        assert not read_into(var, (0, 0, 0), ok)


def test_files_written_by_xarray_are_read_directly(tmp_path: Path) -> None:
    # The streaming regridder's usual input; a silent fallback here would only cost speed,
    # so check the direct read is really taken.
    import xarray as xr

    data = np.random.default_rng(7).normal(size=(6, 5, 8)).astype(np.float32)
    data[2, 1, 1] = np.nan
    xr.Dataset({"tas": (("time", "lat", "lon"), data)}).to_netcdf(tmp_path / "x.nc")
    with netCDF4.Dataset(tmp_path / "x.nc") as nc:
        var = nc["tas"]
        var.set_auto_maskandscale(False)
        buf = np.empty((4, 5, 8), np.float32)
        assert read_into(var, (2, 0, 0), buf)
        np.testing.assert_array_equal(buf, data[2:6])


def test_objects_without_netcdf4_ids_are_refused(tmp_path: Path) -> None:
    # Something shaped like a netCDF4.Variable but without netCDF4-python's private ids (as
    # after a future rename): refuse, so callers use var[...].
    class Lookalike:
        dtype, ndim, shape, name = np.dtype(np.float32), 3, (5, 3, 4), "f4"

        def group(self):
            return object()

    assert not read_into(Lookalike(), (0, 0, 0), np.zeros((2, 3, 4), np.float32))
