"""Datasets as date-partitioned assets: loading, backfills, status true to the disk, metadata, checks.

Real files and a real Dagster instance throughout; backfills run in process here (the SLURM
test runs one on batch-job workers).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, materialize

from hpc_workflows.assets import dataset_definitions, reconcile, regridded_key
from hpc_workflows.datasets import complete_partitions, load_datasets
from tests.assets.conftest import DAYS, dataset_doc, write_source_day

RANGE_TAGS = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def _backfill(spec, instance, first: str, last: str):
    parts = dataset_definitions(spec)
    return materialize(parts.assets, instance=instance, selection=[regridded_key(spec)],
                       tags={RANGE_TAGS[0]: first, RANGE_TAGS[1]: last}, raise_on_error=False)


@pytest.fixture
def instance(dagster_home):
    with DagsterInstance.get() as inst:
        yield inst


def test_bad_dataset_file_is_reported_and_others_load(dataset_dir, tmp_path):
    bad = dataset_doc(tmp_path)
    bad["regrid"]["method"] = "cubic"
    (dataset_dir / "broken.yaml").write_text(yaml.safe_dump(bad))
    (dataset_dir / "nowindow.yaml").write_text(yaml.safe_dump({**dataset_doc(tmp_path), "partitioning": {
        "period": "weekly", "start": "2020-01-01"}}))
    specs, errors = load_datasets(dataset_dir)
    assert [s.name for s in specs] == ["tas_daily"]
    text = "\n".join(errors.values())
    assert "broken.yaml" in text and "regrid.method" in text and "cubic" in text
    assert "nowindow.yaml" in text and "partitioning.period" in text
    assert all(len(e.splitlines()) <= 4 for e in errors.values()), errors


def test_backfill_one_run_failed_date_fails_only_its_partition(dataset_dir, tmp_path, instance):
    (spec,), _ = load_datasets(dataset_dir)
    key = regridded_key(spec)
    result = _backfill(spec, instance, "2020-01-01", "2020-01-04")
    assert not result.success  # day 3's source is missing
    assert sorted(instance.get_materialized_partitions(key)) == ["2020-01-01", "2020-01-02", "2020-01-04"]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "2020-01-03" in failure.step_failure_data.user_failure_data.description
    # Each materialization carries what a scientist checks first.
    record = instance.get_latest_materialization_event(key)
    meta = record.asset_materialization.metadata
    for field in ("output", "bytes", "input_sha256", "output_sha256", "settings_hash", "tas.mean",
                  "tas.valid_fraction", "preview"):
        assert field in meta, (field, sorted(meta))
    assert 280 < meta["tas.mean"].value < 300
    assert meta["preview"].value.startswith("![preview](data:image/png;base64,iVBOR")  # a PNG
    # The checks ran per partition, and passed.
    checks = instance.event_log_storage.get_asset_check_execution_history(
        __import__("dagster").AssetCheckKey(key, "not_all_missing"), limit=10)
    by_partition = {c.partition: c.status.value for c in checks}
    assert {p: by_partition.get(p) for p in ("2020-01-01", "2020-01-02", "2020-01-04")} == dict.fromkeys(
        ("2020-01-01", "2020-01-02", "2020-01-04"), "SUCCEEDED"), by_partition

    # The late file arrives: a re-backfill of the range redoes only day 3.
    write_source_day(tmp_path / "src", dt.date(2020, 1, 3))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.nc")}
    again = _backfill(spec, instance, "2020-01-01", "2020-01-04")
    assert again.success
    assert sorted(instance.get_materialized_partitions(key)) == [str(d) for d in DAYS[:4]]
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.nc")}
    assert {p for p in after if before.get(p) != after[p]} == {tmp_path / "out" / "tas2deg_20200103.nc"}


def test_status_is_true_to_the_disk(dataset_dir, tmp_path, instance):
    (spec,), _ = load_datasets(dataset_dir)
    key = regridded_key(spec)
    assert _backfill(spec, instance, "2020-01-01", "2020-01-02").success
    # Written outside Dagster's knowledge: the same files in a fresh instance are found on disk.
    out = tmp_path / "out"
    keys = [str(d) for d in DAYS]
    assert complete_partitions(spec, keys) == {k: k in ("2020-01-01", "2020-01-02") for k in keys}
    instance.wipe_assets([key])
    assert not instance.get_materialized_partitions(key)
    done = reconcile(instance, spec, keys)
    assert done.recorded == ["2020-01-01", "2020-01-02"] and not done.wiped
    assert sorted(instance.get_materialized_partitions(key)) == ["2020-01-01", "2020-01-02"]
    # Deleting an output makes its partition missing again.
    (out / "tas2deg_20200102.nc").unlink()
    done = reconcile(instance, spec, keys)
    assert done.wiped == ["2020-01-02"]
    assert sorted(instance.get_materialized_partitions(key)) == ["2020-01-01"]
    # A changed file is not complete either (ledger: size and mtime as verified).
    with open(out / "tas2deg_20200101.nc", "ab") as f:
        f.write(b"\0")
    assert reconcile(instance, spec, keys).wiped == ["2020-01-01"]


def test_definitions_load_datasets_folder(dataset_dir, monkeypatch):
    import importlib

    monkeypatch.setenv("HPCW_DATASETS", str(dataset_dir))
    import hpc_workflows.definitions as definitions

    defs = importlib.reload(definitions).defs
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"tas_daily/raw", "tas_daily/regridded"} <= keys
    assert repo.has_job("fetch_and_regrid") and repo.has_job("tas_daily_job")
    assert repo.has_sensor_def("tas_daily_disk_status") and repo.has_schedule_def("tas_daily_newest")
    parents = repo.asset_graph.get(AssetKey(["tas_daily", "regridded"])).parent_keys
    assert AssetKey(["tas_daily", "raw"]) in parents
    monkeypatch.delenv("HPCW_DATASETS")
    importlib.reload(definitions)


def test_new_data_waits_then_gives_up(dataset_dir, instance):
    """Day 3's file is late: waited for while within arrival.give_up_after, then given up."""
    from hpc_workflows.assets.build import arrivals
    from hpc_workflows.datasets.arrival import available

    (spec,), _ = load_datasets(dataset_dir)
    spec = __import__("dataclasses").replace(spec, arrival=spec.arrival.model_copy(
        update={"lookback": 6, "give_up_after": "1D"}))
    early = arrivals(spec, instance, dt.datetime(2020, 1, 4, 12), set(), available)
    assert early.ready == ["2020-01-01", "2020-01-02"] and early.waiting == ["2020-01-03"] and not early.gave_up
    late = arrivals(spec, instance, dt.datetime(2020, 1, 5, 12), set(), available)
    assert late.ready == ["2020-01-01", "2020-01-02", "2020-01-04"] and late.gave_up == ["2020-01-03"]
    again = arrivals(spec, instance, dt.datetime(2020, 1, 5, 12), {"2020-01-03"}, available)
    assert "2020-01-03" not in again.ready + again.waiting + again.gave_up


def test_new_data_sensor_requests_runs(dataset_dir, instance):
    import dagster as dg

    (spec,), _ = load_datasets(dataset_dir)
    sensor = next(s for s in dataset_definitions(spec).sensors if s.name == "tas_daily_new_data")
    with dg.build_sensor_context(instance=instance) as context:
        requests = list(sensor(context))
    # Long after the dataset's end: its newest 3 periods (4-6 January) all have their files.
    assert sorted(r.partition_key for r in requests) == ["2020-01-04", "2020-01-05", "2020-01-06"]
