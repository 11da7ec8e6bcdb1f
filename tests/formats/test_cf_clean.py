"""Converted files pass the IOOS CF checker (CF 1.8, high-priority checks): NIMROD, PP
(single level, monthly mean, model levels), GRIB 1 and 2, and a merged day of NIMROD."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from hpc_workflows.fetch import merge_daily
from hpc_workflows.formats import to_netcdf
from tests.cf.checker import high_priority_findings
from tests.formats.nimrod_files import write_nimrod

SAMPLES = ["air_temp.pp", "UM/northward_sea_ice_velocity.1890.01.01.00.00.pp",
           "wind_speed_lake_victoria.pp", "polar_stereo.grib2"]


@pytest.mark.parametrize("name", SAMPLES)
def test_converted_samples_are_cf_clean(tmp_path, sample_data, name):
    out = tmp_path / "out.nc"
    to_netcdf(sample_data / name, out)
    assert high_priority_findings(out) == []


def test_merged_nimrod_day_is_cf_clean(tmp_path):
    data = np.arange(20, dtype="int16").reshape(4, 5)
    data[0, 0] = -1
    members = [write_nimrod(tmp_path / f"{m:02d}.dat.gz", data, compress=True,
                            validity=dt.datetime(2020, 2, 14, 0, m)) for m in (0, 5, 10)]
    out = merge_daily(members, tmp_path / "merged" / "day.nc")
    assert high_priority_findings(out) == []
