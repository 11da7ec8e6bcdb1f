"""The archive workflow on the format the real archive holds: a day's tar of gzipped NIMROD
files from the tape-archive client (the fake ``moo``), recognised by content, converted with
iris, merged, summed to 3-hourly totals and aggregated from the British National Grid to
lat/lon. Figures are checked against numpy on the generating function, quantised as NIMROD
stores it (int16 rain rate x 32)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from dagster import DagsterInstance

from tests.pipeline import radar_archive as radar
from tests.pipeline.test_archive_workflow import DAYS, FAKES, _config, _expected

pytestmark = pytest.mark.slow
DAY = DAYS[0]


def _run_day(tmp: Path):
    """Run the job for DAY on the archive under ``tmp/moose`` (the fake moo), outputs in
    ``tmp/out``; the fake's call count is in ``tmp/moo_state``."""
    cfg = copy.deepcopy(_config(tmp / "out"))
    cfg["window"].update(start=f"{DAY}", end=f"{DAY}")
    # iris names the NIMROD field from its title ("Rainfall rate Composite").
    cfg["regrid"]["variables"] = ["rainfall_rate_composite"]
    mp = pytest.MonkeyPatch()
    mp.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    mp.setenv("FAKE_MOO_ROOT", str(tmp / "moose"))
    mp.setenv("FAKE_MOO_STATE", str(tmp / "moo_state"))
    from hpc_workflows.definitions import fetch_and_regrid_job

    try:
        with DagsterInstance.ephemeral() as instance:
            return fetch_and_regrid_job.execute_in_process(
                run_config={"ops": {"fetch_and_regrid": {"config": cfg}}}, instance=instance,
                raise_on_error=False)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def nimrod_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nimrod_archive")
    radar.write_nimrod_day_archive(tmp / "moose" / "adhoc" / "projects", DAY)
    result = _run_day(tmp)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return tmp / "out"


def test_nimrod_day_aggregates_match_numpy(nimrod_run):
    path = nimrod_run / f"radar_{DAY:%Y%m%d}_rainrate_composite.nc"
    exp = _expected(DAY, rate=radar.nimrod_rain_rate)
    name = "rainfall_rate_composite"
    with xr.open_dataset(path) as ds:
        assert ds.sizes["time"] == radar.HOURS_PER_DAY // 3
        mean = ds[name].transpose("time", "lat", "lon").values
        vmax = ds[f"{name}_max"].transpose("time", "lat", "lon").values
        frac = ds[f"{name}_fraction"].transpose("time", "band", "lat", "lon").values
        assert ds[name].attrs["units"] == "mm"
        assert "time: sum" in ds[name].attrs.get("cell_methods", "")
    assert np.isfinite(exp["mean"]).sum() > 20
    np.testing.assert_allclose(mean, exp["mean"], rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(vmax, exp["max"], rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(frac, exp["fraction"], rtol=0, atol=1e-6, equal_nan=True)


def test_duplicate_member_fails_the_day_once_naming_it(tmp_path):
    """A day whose archive holds the same 5-minute field twice (under another name) fails
    with an error naming both members, without step retries (issue 16 point 6)."""
    import gzip
    import io
    import tarfile

    root = tmp_path / "moose"
    archive = radar.write_nimrod_day_archive(root / "adhoc" / "projects", DAY)
    when = radar.times_of_day(DAY)[7]
    with tarfile.open(archive, "a") as tar:
        blob = gzip.compress(radar.nimrod_composite(when, "rainrate_composite"))
        info = tarfile.TarInfo(f"resent/metoffice-c-band-rainrate_composite_{when:%Y%m%d%H%M}_copy.dat.gz")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    result = _run_day(tmp_path)
    assert not result.success
    text = "\n".join(ev.step_failure_data.user_failure_data.description
                     for ev in result.get_step_failure_events())
    assert "_copy.dat " in text and f"{when:%Y%m%d%H%M}_1km-composite.dat " in text  # gunzipped names
    assert "both hold time" in text
    assert int((tmp_path / "moo_state").read_text()) == 1  # fetched once, not retried
    assert not (tmp_path / "out" / f"radar_{DAY:%Y%m%d}_rainrate_composite.nc").exists()
