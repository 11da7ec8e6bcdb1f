"""The archive workflow the project grew out of, end to end through the job.

Daily tars of gzipped 5-minute radar composites come from a tape archive through its client
(`moo get -f SRC DEST`; a stand-in that behaves like it, including a failure mid-transfer), are
unpacked, filtered to one product, merged per day, summed to 3-hourly accumulations and
aggregated from the British National Grid onto a coarse lat/lon grid with mean, max and the
fraction of radar cells in each rain-rate band. Every figure is checked against a direct
numpy computation from the generating function.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pyproj
import pytest
import xarray as xr
from dagster import DagsterInstance

from tests.pipeline import radar_archive as radar

pytestmark = pytest.mark.slow

FAKES = Path(__file__).resolve().parents[1] / "fakes"
DAYS = [dt.date(2020, 2, 14), dt.date(2020, 2, 15)]
LAT_EDGES = np.arange(51.0, 54.0 + 1e-9, 0.5)
LON_EDGES = np.arange(-4.5, -1.0 + 1e-9, 0.5)
BANDS = [[0.0, 0.5], [0.5, 2.0], [2.0, 10.0], [10.0]]


def _config(out: Path) -> dict:
    return {
        "window": {"start": "2020-02-14", "end": "2020-02-15", "step": "24h"},
        "source": {
            "template": "moose:/adhoc/projects/radar/{dt:%Y%m%d}.tar",
            "transport": "command",
            "command": ["moo", "get", "-f", "{src}", "{dest}"],
            "members": ["*rainrate_composite*"],
            "products": ["rainrate_composite"],
            "retries": 3,
            "backoff_seconds": 0.01,
        },
        "regrid": {
            "method": "aggregate",
            "statistics": ["mean", "max", "fraction"],
            "bands": BANDS,
            "variables": ["rainfall_rate"],
            "min_valid_fraction": 0.5,
            "target": {"kind": "regional", "lat": [51.0, 54.0], "lon": [-4.5, -1.0], "resolution": 0.5},
            "time_aggregation": {"freq": "3h", "how": "sum", "scale": 1 / 12, "units": "mm"},
        },
        "output": {"directory": str(out), "name": "radar"},
    }


@pytest.fixture(scope="module")
def archive_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("archive")
    root = tmp / "moose"
    for day in DAYS:
        radar.write_day_archive(root / "adhoc" / "projects", day)
    mp = pytest.MonkeyPatch()
    mp.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    mp.setenv("FAKE_MOO_ROOT", str(root))
    mp.setenv("FAKE_MOO_STATE", str(tmp / "moo_state"))
    mp.setenv("FAKE_MOO_FAIL_FIRST", "1")  # the first transfer dies half-way
    from hpc_workflows.definitions import fetch_and_regrid_job

    cfg = {"ops": {"fetch_and_regrid": {"config": _config(tmp / "out")}}}
    try:
        with DagsterInstance.ephemeral() as instance:
            first = fetch_and_regrid_job.execute_in_process(run_config=cfg, instance=instance,
                                                            raise_on_error=False)
            assert first.success, [e.message for e in first.all_events if e.is_failure]
            calls_after_first = int((tmp / "moo_state").read_text())
            first_summary = json.loads((tmp / "out" / "run_summary.json").read_text())
            second = fetch_and_regrid_job.execute_in_process(run_config=cfg, instance=instance)
            assert second.success
            calls_after_second = int((tmp / "moo_state").read_text())
    finally:
        mp.undo()
    return {
        "out": tmp / "out",
        "work": tmp / "out" / ".work",
        "calls": (calls_after_first, calls_after_second),
        "first_summary": first_summary,
        "second_summary": json.loads((tmp / "out" / "run_summary.json").read_text()),
    }


def _expected(day: dt.date, rate=radar.rain_rate) -> dict[str, np.ndarray]:
    """Direct computation: 3-hourly sums, then per coarse cell mean/max/band fractions."""
    times = radar.times_of_day(day)
    rates = np.stack([rate(t) for t in times])  # (t, y, x)
    per = 3 * 60 // radar.STEP_MINUTES
    blocks = rates.reshape(-1, per, radar.NY, radar.NX)
    all_nan = np.isnan(blocks).all(axis=1)
    sums = np.where(all_nan, np.nan, np.nansum(blocks, axis=1) / 12.0)  # (3h, y, x)
    # The mapping (Airy axes, no datum name) is the British National Grid: its cells are
    # placed on WGS84 through the OSGB36 datum shift (docs/regridding.md, "Datum").
    to_ll = pyproj.Transformer.from_crs("EPSG:27700", "EPSG:4326", always_xy=True)
    xx, yy = np.meshgrid(radar.x_centres(), radar.y_centres())
    lon, lat = to_ll.transform(xx, yy)
    iy = np.searchsorted(LAT_EDGES, lat, side="right") - 1
    ix = np.searchsorted(LON_EDGES, lon, side="right") - 1
    ny, nx = LAT_EDGES.size - 1, LON_EDGES.size - 1
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    nt = sums.shape[0]
    mean = np.full((nt, ny, nx), np.nan)
    vmax = np.full((nt, ny, nx), np.nan)
    frac = np.full((nt, len(BANDS), ny, nx), np.nan)
    for j in range(ny):
        for i in range(nx):
            cell = inside & (iy == j) & (ix == i)
            if not cell.any():
                continue
            vals = sums[:, cell]  # (t, n)
            valid = np.isfinite(vals)
            for t in range(nt):
                v = vals[t][valid[t]]
                if v.size < 0.5 * cell.sum() or v.size == 0:
                    continue
                mean[t, j, i] = v.mean()
                vmax[t, j, i] = v.max()
                for b, band in enumerate(BANDS):
                    lo, hi = band[0], (band[1] if len(band) > 1 else np.inf)
                    frac[t, b, j, i] = ((v >= lo) & (v < hi)).mean()
    return {"mean": mean, "max": vmax, "fraction": frac}


@pytest.mark.parametrize("day", DAYS, ids=str)
def test_aggregated_statistics_match_numpy(archive_run, day):
    path = archive_run["out"] / f"radar_{day:%Y%m%d}_rainrate_composite.nc"
    exp = _expected(day)
    with xr.open_dataset(path) as ds:
        assert ds.sizes["time"] == radar.HOURS_PER_DAY // 3
        np.testing.assert_allclose(ds["lat"].values, (LAT_EDGES[:-1] + LAT_EDGES[1:]) / 2)
        np.testing.assert_allclose(ds["lon"].values, (LON_EDGES[:-1] + LON_EDGES[1:]) / 2)
        mean = ds["rainfall_rate"].transpose("time", "lat", "lon").values
        vmax = ds["rainfall_rate_max"].transpose("time", "lat", "lon").values
        frac = ds["rainfall_rate_fraction"].transpose("time", "band", "lat", "lon").values
        assert ds["rainfall_rate"].attrs["units"] == "mm"
        assert "time: sum" in ds["rainfall_rate"].attrs.get("cell_methods", "")
    assert np.isfinite(exp["mean"]).sum() > 20  # the check covers real data, not just NaN
    np.testing.assert_allclose(mean, exp["mean"], rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(vmax, exp["max"], rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(frac, exp["fraction"], rtol=0, atol=1e-6, equal_nan=True)


def test_archive_client_failure_was_retried(archive_run):
    # 2 days: one failed transfer + 2 good ones on the first run.
    assert archive_run["calls"][0] == 3
    assert archive_run["first_summary"]["fetched"] == 2


def test_rerun_touches_nothing(archive_run):
    """The second run called the archive client zero times and rewrote no output."""
    first, second = archive_run["calls"]
    assert second == first
    summary = archive_run["second_summary"]
    assert summary["fetch_skipped"] == 2 and summary["outputs_skipped"] == 2
    assert summary["outputs_written"] == 0


def test_scratch_is_freed_once_outputs_are_verified_and_recorded(archive_run):
    """batching.keep_scratch defaults to false: a file's download, unpacked members and merged
    file are removed once its output is written, verified and in the completion ledger."""
    from hpc_workflows.batching import LEDGER_NAME

    ledger = [json.loads(line) for line in (archive_run["out"] / LEDGER_NAME).read_text().splitlines()]
    for day in DAYS:
        key = f"{day:%Y%m%d}"
        assert not (archive_run["work"] / key).exists()
        name = f"radar_{key}_rainrate_composite.nc"
        assert (archive_run["out"] / name).stat().st_size == [e for e in ledger if e["name"] == name][-1]["size"]
