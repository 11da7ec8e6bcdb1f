"""The job on a single fetched file that is not netCDF: a GRIB2 file fetched through the
filesystem transport is converted (by content) and regridded like netCDF. Conversion is
checked value by value in test_pp_grib.py; this checks the workflow reads it at all."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr
from dagster import DagsterInstance

pytestmark = pytest.mark.slow


def _run(tmp_path, template: str, target: dict, method: str) -> None:
    from hpc_workflows.definitions import fetch_and_regrid_job

    cfg = {
        "window": {"start": "2013-05-20", "end": "2013-05-20", "step": "24h"},
        "source": {"template": template},
        "regrid": {"method": method, "target": target, "min_valid_fraction": 0.5},
        "output": {"directory": str(tmp_path / "out"), "name": "x"},
    }
    with DagsterInstance.ephemeral() as instance:
        result = fetch_and_regrid_job.execute_in_process(
            run_config={"ops": {"fetch_and_regrid": {"config": cfg}}}, instance=instance,
            raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]


def test_fetched_grib2_is_regridded(tmp_path, sample_data):
    src = tmp_path / "archive" / "20130520.grib2"
    src.parent.mkdir()
    shutil.copyfile(sample_data / "polar_stereo.grib2", src)
    target = {"kind": "regional", "lat": [35.0, 55.0], "lon": [250.0, 280.0], "resolution": 2.0}
    _run(tmp_path, str(tmp_path / "archive" / "{dt:%Y%m%d}.grib2"), target, "bilinear")
    (out,) = (tmp_path / "out").glob("x_20130520*.nc")
    with xr.open_dataset(out) as ds:
        values = ds["air_temperature"].values
        assert values.shape[-2:] == (10, 15)
        # The target's north-west corner lies outside the polar stereographic domain.
        assert np.isfinite(values).mean() > 0.8
        # Bilinear values lie within the source's range (250-300 K over North America in May).
        assert 240.0 < float(np.nanmin(values)) and float(np.nanmax(values)) < 310.0
        assert ds["time"].values[0] == np.datetime64("2013-05-20T06:00")


def test_fetched_grib2_named_nc_is_recognised_by_content(tmp_path, sample_data):
    """The name says netCDF, the bytes say GRIB: the bytes win (it used to reach the regridder
    as 'netCDF' and be refused there)."""
    src = tmp_path / "archive" / "20130520.nc"
    src.parent.mkdir()
    shutil.copyfile(sample_data / "polar_stereo.grib2", src)
    target = {"kind": "regional", "lat": [35.0, 55.0], "lon": [250.0, 280.0], "resolution": 2.0}
    _run(tmp_path, str(tmp_path / "archive" / "{dt:%Y%m%d}.nc"), target, "bilinear")
    (out,) = (tmp_path / "out").glob("x_20130520*.nc")
    with xr.open_dataset(out) as ds:
        assert np.isfinite(ds["air_temperature"].values).mean() > 0.8
