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


def _regrid_grib_sample(tmp_path, sample_data, suffix: str):
    """Fetch polar_stereo.grib2 saved under ``suffix``, regrid it bilinearly, return the output."""
    src = tmp_path / "archive" / f"20130520{suffix}"
    src.parent.mkdir()
    shutil.copyfile(sample_data / "polar_stereo.grib2", src)
    target = {"kind": "regional", "lat": [35.0, 55.0], "lon": [250.0, 280.0], "resolution": 2.0}
    _run(tmp_path, str(tmp_path / "archive" / ("{dt:%Y%m%d}" + suffix)), target, "bilinear")
    (out,) = (tmp_path / "out").glob("x_20130520*.nc")
    return out


@pytest.mark.parametrize("suffix", [".grib2", ".nc"])
def test_fetched_grib2_is_regridded(tmp_path, sample_data, suffix):
    """By content, not by name: saved as .nc it used to reach the regridder as 'netCDF' and be
    refused there."""
    with xr.open_dataset(_regrid_grib_sample(tmp_path, sample_data, suffix)) as ds:
        values = ds["air_temperature"].values
        assert values.shape[-2:] == (10, 15)
        # The target's north-west corner lies outside the polar stereographic domain.
        assert np.isfinite(values).mean() > 0.8
        # Bilinear values lie within the source's range (250-300 K over North America in May).
        assert 240.0 < float(np.nanmin(values)) and float(np.nanmax(values)) < 310.0
        assert ds["time"].values[0] == np.datetime64("2013-05-20T06:00")
