"""When a step fails: a clear message, no pointless retries, scratch cleaned, nothing lost."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from tests.pipeline import radar_archive as radar
from tests.pipeline.test_archive_workflow import FAKES, _config

pytestmark = pytest.mark.slow


@pytest.fixture
def moo_archive(tmp_path, monkeypatch):
    root = tmp_path / "moose"
    radar.write_day_archive(root / "adhoc" / "projects", dt.date(2020, 2, 14))
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MOO_ROOT", str(root))
    monkeypatch.setenv("FAKE_MOO_STATE", str(tmp_path / "moo_state"))
    return tmp_path


def _run(cfg):
    from hpc_workflows.definitions import fetch_and_regrid_job

    with DagsterInstance.ephemeral() as instance:
        result = fetch_and_regrid_job.execute_in_process(
            run_config={"ops": {"fetch_and_regrid": {"config": cfg}}},
            instance=instance, raise_on_error=False)
        events = list(result.all_events)
    return result, events


def test_missing_product_fails_once_and_cleans_scratch(moo_archive):
    cfg = _config(moo_archive / "out")
    cfg["window"]["end"] = "2020-02-14"
    cfg["source"]["members"] = ["*composite*"]
    cfg["source"]["products"] = ["rainrate_composite", "echotop_composite"]
    result, events = _run(cfg)
    assert not result.success
    failures = [e for e in events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [e.step_key for e in failures] == ["fetch_and_regrid.process_batch[20200214]"]
    message = failures[0].event_specific_data.error.to_string()
    assert "echotop_composite" in message and "source.members/products" in message
    # final error: not retried by the step policy (the archive client was called once)
    assert not [e for e in events if e.event_type == DagsterEventType.STEP_RESTARTED]
    assert int((moo_archive / "moo_state").read_text()) == 1
    # no output was written from a missing input, and the summary did not run
    assert not [e for e in events if e.step_key and "summarise" in e.step_key
                and e.event_type == DagsterEventType.STEP_START]
    work = moo_archive / "out" / ".work" / "20200214"
    assert not (work / "extract").exists(), "a failed file's unpack folder is removed"
    assert (work / "download" / "20200214.tar").is_file(), "the verified download is kept"
    assert not list((moo_archive / "out").glob("*.nc"))


def test_bad_data_fails_without_retry(moo_archive):
    cfg = _config(moo_archive / "out")
    cfg["window"]["end"] = "2020-02-14"
    cfg["regrid"]["variables"] = ["precipitation_flux"]
    result, events = _run(cfg)
    assert not result.success
    failures = [e for e in events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [e.step_key for e in failures] == ["fetch_and_regrid.process_batch[20200214]"]
    message = failures[0].event_specific_data.error.to_string()
    assert "precipitation_flux" in message and "regrid.variables" in message
    assert not [e for e in events if e.event_type == DagsterEventType.STEP_RESTARTED]
    # the failed step left no partial output behind
    assert not list((moo_archive / "out").glob("*.nc*"))


def test_missing_archive_file_fails_fast_with_client_message(moo_archive):
    """moo's exit 2 (no such data) is configured as permanent: one call, its stderr kept."""
    cfg = _config(moo_archive / "out")
    cfg["window"].update(start="2020-02-13", end="2020-02-14")  # no archive for the 13th
    cfg["source"]["permanent_exit_codes"] = [2]
    result, events = _run(cfg)
    assert not result.success
    failures = [e for e in events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [e.step_key for e in failures] == ["fetch_and_regrid.process_batch[20200213]"]
    message = failures[0].event_specific_data.error.to_string()
    assert "TSSC_NO_SUCH_DATA" in message and "20200213.tar" in message
    argv_log = (moo_archive / "moo_state.argv").read_text().splitlines()
    assert sum("20200213.tar" in line for line in argv_log) == 1
    # the other day is unaffected: fetched, regridded and written
    assert (moo_archive / "out" / "radar_20200214_rainrate_composite.nc").is_file()
