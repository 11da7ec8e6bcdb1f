"""merge_daily refuses inputs whose units disagree, naming the variable and both files."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.fetch import merge_daily


def _file(path, hour, units):
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), np.full((1, 2, 3), 280.0, "float32"), {"units": units})},
        coords={"time": [np.datetime64(f"2020-02-14T{hour:02d}", "ns")],
                "lat": [0.0, 1.0], "lon": [0.0, 1.0, 2.0]},
    )
    ds.to_netcdf(path)
    return path


def test_mismatched_units_are_refused(tmp_path):
    a = _file(tmp_path / "a.nc", 0, "K")
    b = _file(tmp_path / "b.nc", 1, "degC")
    out = tmp_path / "merged.nc"
    with pytest.raises(ValueError) as info:
        merge_daily([a, b], out)
    msg = str(info.value)
    assert "'tas'" in msg and "'K'" in msg and "'degC'" in msg and "b.nc" in msg
    assert not out.exists()


def test_matching_units_merge(tmp_path):
    paths = [_file(tmp_path / f"{h}.nc", h, "K") for h in range(3)]
    out = merge_daily(paths, tmp_path / "merged.nc")
    with xr.open_dataset(out) as ds:
        assert ds.sizes["time"] == 3 and ds["tas"].attrs["units"] == "K"
