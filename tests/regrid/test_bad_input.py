"""Bad input: clear errors naming the file, the variable and what is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.regrid import parse_target_grid, regrid
from hpc_workflows.regrid.validate import check_consistent_units

from .datasets import centres, latlon_dataset


@pytest.fixture()
def on_disk(tmp_path: Path) -> Path:
    path = tmp_path / "in.nc"
    latlon_dataset(centres(0, 10, 1.0), centres(0, 10, 1.0)).to_netcdf(path)
    return path


def test_unknown_method_lists_valid(on_disk: Path) -> None:
    with xr.open_dataset(on_disk) as ds, pytest.raises(ValueError, match="'bicubic'.*conservative"):
        regrid(ds, "global_1deg", "bicubic")


def test_uninterpretable_grid_names_file_variable_and_missing_parts(tmp_path: Path) -> None:
    path = tmp_path / "nogrid.nc"
    xr.Dataset({"tas": (("y", "x"), np.zeros((3, 4)))}).to_netcdf(path)
    with xr.open_dataset(path) as ds, pytest.raises(ValueError) as err:
        regrid(ds, "global_1deg")
    msg = str(err.value)
    assert "nogrid.nc" in msg and "'tas'" in msg
    assert "coordinates" in msg and "grid_mapping" in msg


def test_grid_mapping_named_but_missing(tmp_path: Path) -> None:
    path = tmp_path / "gm.nc"
    ds = xr.Dataset({"tas": (("y", "x"), np.zeros((3, 4)), {"grid_mapping": "crs"})},
                    coords={"y": ("y", [0.0, 1e3, 2e3], {"standard_name": "projection_y_coordinate"}),
                            "x": ("x", [0.0, 1e3, 2e3, 3e3])})
    ds.to_netcdf(path)
    with xr.open_dataset(path) as ds2, pytest.raises(ValueError, match="gm.nc.*'tas'.*'crs'.*missing"):
        regrid(ds2, "global_1deg", "bilinear")


def test_non_overlapping_target(on_disk: Path) -> None:
    with xr.open_dataset(on_disk) as ds, pytest.raises(ValueError, match="in.nc.*does not overlap"):
        regrid(ds, {"kind": "regional", "lat": [40, 50], "lon": [100, 110], "resolution": 1})
    with xr.open_dataset(on_disk) as ds, pytest.raises(ValueError, match="does not overlap"):
        regrid(ds, {"kind": "regional", "lat": [40, 50], "lon": [100, 110], "resolution": 1},
               "aggregate")


def test_coordinate_units_not_degrees(tmp_path: Path) -> None:
    ds = latlon_dataset(centres(0, 10, 1.0), centres(0, 10, 1.0))
    ds["lat"].attrs["units"] = "radians"
    ds["lat"].attrs["standard_name"] = "latitude"
    with pytest.raises(ValueError, match="'lat'.*radians.*degrees"):
        regrid(ds, "global_1deg")


def test_mismatched_units_across_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    latlon_dataset(centres(0, 10, 1.0), centres(0, 10, 1.0)).to_netcdf(a)
    dsb = latlon_dataset(centres(0, 10, 1.0), centres(0, 10, 1.0))
    dsb["tas"].attrs["units"] = "degC"
    dsb.to_netcdf(b)
    with xr.open_dataset(a) as da, xr.open_dataset(b) as db:
        check_consistent_units([da, da], ["tas"])
        with pytest.raises(ValueError, match=r"'tas'.*'K'.*a\.nc.*'degC'.*b\.nc"):
            check_consistent_units([da, db])


def test_unknown_variable_and_bad_fraction(on_disk: Path) -> None:
    with xr.open_dataset(on_disk) as ds:
        with pytest.raises(ValueError, match="'pr'.*not found.*tas"):
            regrid(ds, "global_1deg", variables=["pr"])
        with pytest.raises(ValueError, match="min_valid_fraction"):
            regrid(ds, "global_1deg", min_valid_fraction=1.5)


def test_conservative_needs_cell_corners(sample_data) -> None:
    """A curvilinear grid without corners cannot be regridded conservatively: the message
    says what to add and which methods work without."""
    ds = xr.open_dataset(sample_data / "orca2_votemper.nc")
    for name in ("nav_lat", "nav_lon"):
        ds[name].attrs.pop("bounds", None)
    with pytest.raises(ValueError, match="conservative.*curvilinear.*corners.*bilinear"):
        regrid(ds, "global_1deg", "conservative")


@pytest.mark.parametrize("spec", ["global_1degree", "r360x180", {"kind": "gaussian"}, 42,
                                  {"kind": "regional", "lat": [0, 10]},
                                  {"kind": "global", "resolution": 0.7}])
def test_bad_target_spec(spec) -> None:
    with pytest.raises(ValueError) as err:
        parse_target_grid(spec)
    assert repr(spec)[:10] in str(err.value) or str(spec)[:10] in str(err.value)
