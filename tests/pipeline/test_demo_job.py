"""The demo job end to end through the Dask executor on a local cluster.

The output is checked against an independent reference: CDO's first-order conservative
remapping (``cdo remapcon``) of the same input onto the same grid, given as an explicit CDO
grid description.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from dagster import DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.instance.ref import InstanceRef

from tests.conftest import workflow_section

pytestmark = pytest.mark.slow

# configs/dev.yaml's target: regional 2.5 degree cells with edges at 15..60N, 225..315E
TARGET_LAT = np.arange(16.25, 60.0, 2.5)
TARGET_LON = np.arange(226.25, 315.0, 2.5)


def _run(run_config, instance):
    # Dask workers rebuild the job from this pointer, as they do for `dagster job execute -m`.
    job = ReconstructableJob.for_module("hpc_workflows.definitions", "fetch_and_regrid_job")
    return execute_job(job, instance=instance, run_config=run_config)


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory):
    """Run the demo config once (Dask executor, local cluster) and return its output folder."""
    import copy

    import yaml

    from hpc_workflows.instance import ensure_dagster_home
    from tests.conftest import REPO

    tmp = tmp_path_factory.mktemp("demo")
    home = ensure_dagster_home(tmp / "home")
    cfg = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    workflow_section(cfg)["output"]["directory"] = str(tmp / "out")
    mp = pytest.MonkeyPatch()
    mp.chdir(REPO)
    mp.setenv("DAGSTER_HOME", str(home))
    try:
        with DagsterInstance.get() as instance:
            result = _run(cfg, instance)
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            run_id = result.run_id
            first_summary = json.loads((tmp / "out" / "run_summary.json").read_text())
            second = _run(cfg, instance)
            assert second.success
            second_id = second.run_id
    finally:
        mp.undo()
    return {"dir": tmp / "out", "cfg": cfg, "run_id": run_id, "second_run_id": second_id, "home": home,
            "first_summary": first_summary}


def test_demo_ran_on_dask_executor(demo_outputs):
    """Steps ran through the Dask executor, one batch step per batch of sources, keyed by them
    (two files: one file per batch, so both run at once on the two workers)."""
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(demo_outputs["home"]))) as inst:
        records = inst.all_logs(demo_outputs["run_id"])
    engine = " ".join(r.dagster_event.message or "" for r in records
                      if r.dagster_event and r.dagster_event.event_type_value == "ENGINE_EVENT")
    assert "dask" in engine.lower()
    steps = {r.step_key for r in records if r.step_key}
    assert "fetch_and_regrid.process_batch[A1B]" in steps
    assert "fetch_and_regrid.process_batch[E1]" in steps


def test_demo_output_is_cf_and_on_target_grid(demo_outputs):
    out = demo_outputs["dir"] / "tas_north_america_2p5deg_A1B.nc"
    with xr.open_dataset(out, decode_times=False) as ds:
        tas = ds["air_temperature"]
        assert tas.dims == ("time", "lat", "lon")
        np.testing.assert_allclose(ds["lat"].values, TARGET_LAT)
        np.testing.assert_allclose(ds["lon"].values, TARGET_LON)
        assert ds["lat"].attrs["units"] == "degrees_north"
        assert ds["lon"].attrs["units"] == "degrees_east"
        assert ds["lat"].attrs.get("bounds") in ds.variables
        assert ds["lon"].attrs.get("bounds") in ds.variables
        assert tas.attrs["standard_name"] == "air_temperature"
        assert tas.attrs["units"] == "K"
        assert "area: mean" in tas.attrs.get("cell_methods", "")
        assert ds.attrs["Conventions"].startswith("CF-")
        assert "sha256:5f728a78" in ds.attrs["hpc_workflows_sources"]
        assert "conservative" in json.dumps(dict(ds.attrs))
        # 2000-01-01 .. 2099-12-30 of a yearly series: 100 steps
        assert ds.sizes["time"] == 100


def test_demo_values_match_cdo_remapcon(demo_outputs, tmp_path):
    """Independent reference: CDO's conservative remapping of the same window."""
    if shutil.which("cdo") is None:
        pytest.fail("cdo is not installed: run ci/install-system-packages.sh")
    import iris_sample_data

    src = Path(iris_sample_data.path) / "A1B_north_america.nc"
    with xr.open_dataset(src, use_cftime=True) as ds:
        sub = ds[["air_temperature"]].sel(time=slice("2000-01-01", "2099-12-30")).load()
    sub.encoding.pop("unlimited_dims", None)  # CDO 2.1 misreads iris's unlimited time
    inp = tmp_path / "in.nc"
    sub.to_netcdf(inp)
    grid = tmp_path / "grid.txt"
    grid.write_text(
        "gridtype = lonlat\n"
        f"xsize = {TARGET_LON.size}\nysize = {TARGET_LAT.size}\n"
        f"xfirst = {TARGET_LON[0]}\nxinc = 2.5\nyfirst = {TARGET_LAT[0]}\nyinc = 2.5\n"
    )
    ref_path = tmp_path / "ref.nc"
    subprocess.run(["cdo", "-s", "-f", "nc4", f"remapcon,{grid}", str(inp), str(ref_path)], check=True)
    with xr.open_dataset(ref_path, decode_times=False) as ref, \
            xr.open_dataset(demo_outputs["dir"] / "tas_north_america_2p5deg_A1B.nc", decode_times=False) as ours:
        a = ours["air_temperature"].values
        b = ref["air_temperature"].values
        assert a.shape == b.shape
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)  # float32 noise on ~280 K is ~3e-5


def test_demo_area_mean_preserved(demo_outputs):
    summary = demo_outputs["first_summary"]
    outputs = [o for r in summary["results"] for o in r["outputs"]]
    assert len(outputs) == 2
    for out in outputs:
        before = out["area_mean_before[air_temperature]"]
        after = out["area_mean_after[air_temperature]"]
        assert 200 < before < 320
        # "before" is the source's mean over exactly the target's region, which a
        # conservative regrid preserves (float32 data: ~1e-6 K)
        assert abs(after - before) < 1e-4


def test_rerun_skips_completed_work(demo_outputs):
    """The second run fetched nothing and rewrote nothing."""
    summary = json.loads((demo_outputs["dir"] / "run_summary.json").read_text())
    assert summary["run_id"] == demo_outputs["second_run_id"]
    assert summary["fetched"] == 0 and summary["fetch_skipped"] == 2
    assert summary["outputs_written"] == 0 and summary["outputs_skipped"] == 2


def test_rerun_with_nothing_to_do_opened_no_cluster(demo_outputs):
    """Plan and summary run on the coordinator; the cluster opens only for a batch step."""
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(demo_outputs["home"]))) as inst:
        def engine(run_id):
            return [r.dagster_event.message or "" for r in inst.all_logs(run_id)
                    if r.dagster_event and r.dagster_event.event_type_value == "ENGINE_EVENT"]
        first, second = engine(demo_outputs["run_id"]), engine(demo_outputs["second_run_id"])
    assert any("Dask cluster" in m for m in first)
    assert not any("Dask cluster" in m for m in second), second
