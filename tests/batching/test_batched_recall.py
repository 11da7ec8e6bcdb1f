"""A batch recalls its files from the (stand-in) tape archive in groups of files_in_flight:
one `moo get` per group, each file still verified on its own."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

from hpc_workflows.batching import run_batch
from hpc_workflows.fetch import FetchSettings, Source
from tests.batching.conftest import make_job, make_sources
from tests.fetch.conftest import moo  # noqa: F401 - the stand-in client on PATH (a fixture)

BATCH = ["moo", "get", "-f", "{src}", "{dest_dir}"]


def _archive(moo_root: Path, n: int) -> list[Source]:
    """``n`` daily netCDF files in the archive, as moose:/ sources with their checksums."""
    local = make_sources(moo_root / "daily", n)
    return [Source(key=s.key, url=f"moose:/daily/{Path(s.url).name}", time=s.time,
                   checksum="sha256:" + hashlib.sha256(Path(s.url).read_bytes()).hexdigest())
            for s in local]


def _recalls() -> list[list[str]]:
    path = Path(os.environ["FAKE_MOO_STATE"] + ".argv")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _job(tmp: Path, in_flight: int):
    job = make_job(tmp, files_in_flight=in_flight)
    return dataclasses.replace(job, fetch=FetchSettings(
        transport="command", command=["moo", "get", "-f", "{src}", "{dest}"], batch_command=BATCH,
        retries=0, host_lock_dir=str(tmp / "slots")))


def test_batch_recalls_in_groups_of_files_in_flight(moo, tmp_path):  # noqa: F811
    sources = _archive(moo, 5)
    results = run_batch(sources, _job(tmp_path, 2))
    assert [r.status for r in results] == ["written"] * 5, [r.error for r in results]
    calls = _recalls()
    assert len(calls) == math.ceil(5 / 2)
    recalled = [a for argv in calls for a in argv if a.startswith("moose:/")]
    assert sorted(recalled) == sorted(s.url for s in sources)  # each file once
    assert all(len([a for a in argv if a.startswith("moose:/")]) <= 2 for argv in calls)
    assert all((tmp_path / "out" / f"tas_{s.key}.nc").is_file() for s in sources)
    assert not list((tmp_path / "scratch").glob(".recall_*"))  # staging removed


def test_a_file_that_fails_verification_fails_alone(moo, tmp_path):  # noqa: F811
    sources = _archive(moo, 3)
    sources[1] = dataclasses.replace(sources[1], checksum="sha256:" + "0" * 64)
    results = run_batch(sources, _job(tmp_path, 3))
    assert [r.status for r in results] == ["written", "failed", "written"]
    assert "checksum" in results[1].error.lower() or "sha256" in results[1].error.lower(), results[1].error
    assert len(_recalls()) == 1
    assert not (tmp_path / "out" / f"tas_{sources[1].key}.nc").exists()


def test_batched_recalls_with_windows_across_files(moo, tmp_path):  # noqa: F811
    """09Z rain days with batched recalls: a group's last file waits for the next group's
    first, so groups are one smaller than the scratch slots (no deadlock), and each day's
    window still reads the next day's first steps."""
    import datetime as dt

    import numpy as np
    import xarray as xr

    from hpc_workflows.temporal import TimeAggregation
    from tests.temporal.synthetic import TARGET, day_times, window_sum, write_day

    days = [dt.datetime(2020, 2, 14) + dt.timedelta(days=i) for i in range(6)]
    (moo / "rain").mkdir()
    sources = []
    for day in days:
        write_day(moo / "rain" / f"{day:%Y%m%d}.nc", day_times(day.date()))
        sources.append(Source(key=f"{day:%Y%m%d}", url=f"moose:/rain/{day:%Y%m%d}.nc", time=day))
    job = _job(tmp_path, 3)
    job = dataclasses.replace(
        job, neighbour_step=dt.timedelta(days=1),
        preprocess=dataclasses.replace(job.preprocess, target=TARGET, time_aggregation=TimeAggregation(
            freq="24h", offset="9h", how="sum", scale=1 / 12, units="mm")))
    # In a thread with a deadline: a deadlock (groups as large as the slots) fails, not hangs.
    import threading

    done: list = []
    worker = threading.Thread(target=lambda: done.append(run_batch(sources, job)), daemon=True)
    worker.start()
    worker.join(timeout=180)
    assert done, "the batch did not finish in 180 s: fetch groups and scratch slots deadlocked"
    results = done[0]
    assert [r.status for r in results] == ["written"] * 6, [r.error for r in results]
    assert len(_recalls()) == 3  # groups of 3 - 1 = 2 files
    for day in days[:5]:
        with xr.open_dataset(tmp_path / "out" / f"tas_{day:%Y%m%d}.nc") as ds:
            nxt = day + dt.timedelta(days=1)
            np.testing.assert_allclose(ds.rainfall_rate.values[0], window_sum(
                f"{day:%Y-%m-%d}T09:00", f"{nxt:%Y-%m-%d}T09:00"), rtol=1e-5)
