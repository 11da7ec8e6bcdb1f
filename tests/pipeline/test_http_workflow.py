"""fetch_and_regrid over HTTP with faults, through the job: resume, Retry-After, sidecar checksums.

Uses the fetch tests' real loopback server. Also checks that credentials in a URL never reach
the outputs or the run summary.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from dagster import DagsterInstance

from tests.fetch.fault_server import Fault, FaultServer, sha256_hex

pytestmark = pytest.mark.slow

DAYS = ["20200214", "20200215", "20200216"]


def _day_file(day: str) -> bytes:
    lat = np.arange(-89.0, 90.0, 2.0)
    lon = np.arange(1.0, 360.0, 2.0)
    t = np.array([np.datetime64(f"{day[:4]}-{day[4:6]}-{day[6:]}T00") + np.timedelta64(6 * i, "h")
                  for i in range(4)], dtype="datetime64[ns]")
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    base = 280 + 20 * np.cos(la) + 3 * np.sin(2 * lo) * np.cos(la)
    data = np.stack([base + i + int(day[-1]) for i in range(4)]).astype("float32")
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), data, {"standard_name": "air_temperature", "units": "K"})},
        coords={"time": t,
                "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
                "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"})},
    )
    return bytes(ds.to_netcdf())


@pytest.fixture(scope="module")
def http_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    from hpc_workflows.definitions import fetch_and_regrid_job

    with FaultServer() as server:
        for day in DAYS:
            data = _day_file(day)
            server.add(f"/data/{day}.nc", data)
            server.add(f"/data/{day}.nc.sha256", f"{sha256_hex(data)}  {day}.nc\n".encode())
        server.inject("/data/20200214.nc", Fault("drop", at=20_000))
        server.inject("/data/20200215.nc", Fault("status", status=503, retry_after="0"))
        base = server.url("/data/").replace("http://", "http://alice:s3cret@")
        cfg = {
            "window": {"start": "2020-02-14", "end": "2020-02-16", "step": "24h"},
            "source": {"template": base + "{dt:%Y%m%d}.nc", "checksum_sidecar": "sha256",
                       "retries": 3, "backoff_seconds": 0.01, "read_timeout": 5.0},
            "regrid": {"method": "conservative", "target": {"name": "global_10deg"}},
            "output": {"directory": str(tmp / "out"), "name": "tas"},
        }
        with DagsterInstance.ephemeral() as instance:
            result = fetch_and_regrid_job.execute_in_process(
                run_config={"ops": {"fetch_and_regrid": {"config": cfg}}}, instance=instance,
                raise_on_error=False)
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            log_first = list(server.log)
            again = fetch_and_regrid_job.execute_in_process(
                run_config={"ops": {"fetch_and_regrid": {"config": cfg}}}, instance=instance)
            assert again.success
            log_second = server.log[len(log_first):]
    return {"out": tmp / "out", "log": log_first, "log_second": log_second}


def test_dropped_download_was_resumed_with_range(http_run):
    reqs = [r for r in http_run["log"] if r.path == "/data/20200214.nc"]
    assert len(reqs) == 2
    assert reqs[0].range is None and reqs[0].sent == 20_000
    assert reqs[1].range == "bytes=20000-"


def test_503_with_retry_after_was_retried(http_run):
    statuses = [r.status for r in http_run["log"] if r.path == "/data/20200215.nc"]
    assert statuses == [503, 200]


def test_outputs_conserve_and_hide_credentials(http_run):
    from hpc_workflows.regrid import area_weighted_mean

    for day in DAYS:
        with xr.open_dataset(http_run["out"] / f"tas_{day}.nc") as out:
            src = xr.open_dataset(_day_file(day))
            assert out["tas"].dims == ("time", "lat", "lon") and out["tas"].shape == (4, 18, 36)
            for i in range(4):
                before = area_weighted_mean(src["tas"].isel(time=i))
                after = area_weighted_mean(out["tas"].isel(time=i))
                assert abs(after - before) / before < 1e-6
            text = json.dumps({k: str(v) for k, v in out.attrs.items()})
            assert "s3cret" not in text, [k for k, v in out.attrs.items() if "s3cret" in str(v)]
            assert "http://***@127.0.0.1" in out.attrs["hpc_workflows_sources"]
    assert "s3cret" not in (http_run["out"] / "run_summary.json").read_text()


def test_second_run_downloads_nothing(http_run):
    assert [r for r in http_run["log_second"] if not r.path.endswith(".sha256")] == []
    summary = json.loads((http_run["out"] / "run_summary.json").read_text())
    assert summary["outputs_skipped"] == 3 and summary["outputs_written"] == 0


def test_streamed_outputs_carry_provenance(http_run):
    """Whole files without resampling take the streaming path; its outputs are stamped too."""
    with xr.open_dataset(http_run["out"] / "tas_20200214.nc") as out:
        assert out.attrs["hpc_workflows_regrid_method"] == "conservative"
        assert len(out.attrs["hpc_workflows_input_sha256"]) == 64
        assert out["tas"].attrs["units"] == "K"
        assert "area: mean" in out["tas"].attrs["cell_methods"]
        assert out["lat"].attrs["bounds"] in out.variables
