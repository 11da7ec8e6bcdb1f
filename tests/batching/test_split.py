"""A batch in two halves (fetch on one node, regrid on another), in plain Python: the same
outputs as the pipelined batch, fetch failures handed on as failed files, a retry that finds
its work done, and a clear error when the regrid node cannot see the fetched files.
Real files, the filesystem transport and the real regridder throughout."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from hpc_workflows.batching import Ledger, run_batch
from hpc_workflows.batching.split import fetch_batch, regrid_batch
from tests.batching.conftest import make_job, make_sources


def _handed_over(fetched):
    """What the regrid step receives: the fetch step's output after Dagster's pickling."""
    return pickle.loads(pickle.dumps(fetched))


def _same_output(a: Path, b: Path) -> None:
    with xr.open_dataset(a) as x, xr.open_dataset(b) as y:
        xr.testing.assert_identical(x.drop_attrs(deep=False), y.drop_attrs(deep=False))
        np.testing.assert_array_equal(x.tas.values, y.tas.values)


def test_fetch_then_regrid_writes_what_the_pipelined_batch_writes(tmp_path):
    sources = make_sources(tmp_path / "archive", 5)
    whole = make_job(tmp_path / "whole")
    assert [r.status for r in run_batch(sources, whole)] == ["written"] * 5

    job = make_job(tmp_path / "split")
    fetched = fetch_batch(sources, job)
    # Everything is on scratch between the halves; nothing is written yet.
    assert sorted(p.name for p in job.workdir.iterdir()) == [s.key for s in sources]
    assert not list(job.output_dir.glob("tas_*.nc"))
    assert fetched.node and fetched.fetch_failures == []
    results = regrid_batch(_handed_over(fetched), job)
    assert [r.key for r in results] == [s.key for s in sources]
    assert [r.status for r in results] == ["written"] * 5, [r.error for r in results]
    assert all(r.fetch["bytes"] > 0 and r.outputs for r in results)
    assert not any(job.workdir.iterdir()), "each file's scratch is removed once verified"
    for s in sources:
        _same_output(whole.output_path(s.key, "data"), job.output_path(s.key, "data"))
    wanted = [i for s in sources for i in job.outputs_for(s).values()]
    assert Ledger(job.output_dir).completed(wanted) == {w.path for w in wanted}

    # A retry of the regrid half (its worker lost after writing) finds the files complete
    # by the ledger, although their scratch is gone; a new fetch fetches nothing.
    again = regrid_batch(_handed_over(fetched), job)
    assert [r.status for r in again] == ["complete"] * 5
    assert fetch_batch(sources, job).items == []


def test_a_file_that_fails_to_fetch_is_a_failed_file_the_others_are_written(tmp_path):
    sources = make_sources(tmp_path / "archive", 4, missing=(1,))
    job = make_job(tmp_path)
    fetched = fetch_batch(sources, job)
    assert [r.key for r in fetched.fetch_failures] == [sources[1].key]
    assert not fetched.fetch_failures[0].retryable  # a missing file: a retry would repeat it
    results = regrid_batch(_handed_over(fetched), job)
    assert [r.status for r in results] == ["written", "failed", "written", "written"]
    assert "FetchError" in results[1].error and sources[1].url in results[1].error


def test_fetched_files_the_regrid_node_cannot_see_fail_with_the_fix_named(tmp_path):
    sources = make_sources(tmp_path / "archive", 2)
    job = make_job(tmp_path)
    fetched = fetch_batch(sources, job)
    shutil.rmtree(job.workdir)  # as a compute node sees a data mover's node-local scratch
    results = regrid_batch(_handed_over(fetched), job)
    assert [r.status for r in results] == ["failed", "failed"]
    assert all("SharedScratchError" in r.error and "output.workdir" in r.error
               and "both see" in r.error for r in results), results[0].error
    assert not any(r.retryable for r in results)  # a config problem: retrying repeats it


def test_windows_across_files_split_over_two_batches(tmp_path):
    """09Z rain days in two batches: each batch's last day borrows the next batch's first
    day, fetched into the fetch step's own scratch and removed after the regrid step."""
    from hpc_workflows.fetch import Source
    from hpc_workflows.temporal import TimeAggregation
    from tests.temporal.synthetic import TARGET, day_times, window_sum, write_day

    days = [dt.datetime(2020, 2, 14) + dt.timedelta(days=i) for i in range(4)]
    (tmp_path / "rain").mkdir()
    sources = [Source(key=f"{d:%Y%m%d}", url=str(write_day(tmp_path / "rain" / f"{d:%Y%m%d}.nc",
                                                           day_times(d.date()))), time=d)
               for d in days]
    job = make_job(tmp_path)
    job = dataclasses.replace(
        job, neighbour_step=dt.timedelta(days=1),
        preprocess=dataclasses.replace(job.preprocess, target=TARGET, time_aggregation=TimeAggregation(
            freq="24h", offset="9h", how="sum", scale=1 / 12, units="mm")))
    for batch in (sources[:2], sources[2:]):
        fetched = fetch_batch(batch, job, run_sources=sources)
        results = regrid_batch(_handed_over(fetched), job)
        assert [r.status for r in results] == ["written", "written"], [r.error for r in results]
    assert not any(job.workdir.iterdir()), "borrowed neighbours and files' scratch are removed"
    for day in days[:3]:
        nxt = day + dt.timedelta(days=1)
        with xr.open_dataset(job.output_path(f"{day:%Y%m%d}", "data")) as ds:
            np.testing.assert_allclose(ds.rainfall_rate.values[0], window_sum(
                f"{day:%Y-%m-%d}T09:00", f"{nxt:%Y-%m-%d}T09:00"), rtol=1e-5)


def test_handoff_gate_bounds_batches_fetched_and_not_yet_regridded(tmp_path):
    from hpc_workflows.batching.split import HandoffGate

    gate = HandoffGate(tmp_path / "scratch", "run-a", limit=2)
    assert gate.wait_for_room(timeout=0)  # nothing pending
    gate.hold("b1")
    assert gate.wait_for_room(timeout=0)
    gate.hold("b2")
    assert not gate.wait_for_room(timeout=0.3, poll=0.05)  # full: a third fetch waits
    assert HandoffGate(tmp_path / "scratch", "run-b", limit=2).wait_for_room(timeout=0)  # other runs' markers do not count
    gate.release("b1")  # b1's regrid ended
    assert gate.wait_for_room(timeout=0) and gate.pending() == 1
    assert HandoffGate(tmp_path / "scratch", "run-a", limit=None).wait_for_room(timeout=0)  # no bound
    gate.remove()
    assert gate.pending() == 0 and not (tmp_path / "scratch" / ".fetched").exists()
