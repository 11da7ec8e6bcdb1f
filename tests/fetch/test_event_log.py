"""A retried download's warning reaches the Dagster event log of a real run (the UI)."""

from __future__ import annotations

import logging

import pytest
from dagster import DagsterInstance

from hpc_workflows.instance import ensure_dagster_home
from tests.fetch.fault_server import Fault
from tests.pipeline.test_http_workflow import _day_file

pytestmark = pytest.mark.slow


def _run(server, tmp_path, instance: DagsterInstance):
    from hpc_workflows.definitions import fetch_and_regrid_job

    cfg = {
        "window": {"start": "2020-02-14", "end": "2020-02-14", "step": "24h"},
        "source": {"template": server.url("/data/{dt:%Y%m%d}.nc"), "retries": 2,
                   "backoff_seconds": 0.01, "read_timeout": 5.0},
        "regrid": {"method": "conservative", "target": {"name": "global_10deg"}},
        "output": {"directory": str(tmp_path / "out"), "name": "tas"},
    }
    return fetch_and_regrid_job.execute_in_process(
        run_config={"ops": {"fetch_and_regrid": {"config": cfg}}}, instance=instance, raise_on_error=False)


def test_retry_warning_is_in_the_event_log(server, tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    server.add("/data/20200214.nc", _day_file("20200214"))
    server.inject("/data/20200214.nc", Fault("status", status=503))
    home = ensure_dagster_home(tmp_path / "home")
    with DagsterInstance.from_config(str(home)) as instance:
        result = _run(server, tmp_path, instance)
        assert result.success
        warnings = [e for e in instance.all_logs(result.run_id)
                    if e.level == logging.WARNING and "attempt 1/3 failed" in e.user_message]
    assert len(warnings) == 1, "the retry warning is missing from the run's event log"
    assert "HTTP 503" in warnings[0].user_message
    assert warnings[0].step_key.endswith("[20200214]")  # the step that fetched the file
    assert len(server.requests("/data/20200214.nc")) == 2


def test_library_warnings_reach_the_event_log_through_the_instance_config(tmp_path, monkeypatch):
    """Loggers the op does not hand a context.log to (e.g. deep in the library) are captured
    through ``python_logs.managed_python_loggers`` in the dagster.yaml we write."""
    from dagster import job, op

    @op
    def warn_from_library() -> None:
        logging.getLogger("hpc_workflows.fetch.unpack").warning("archive x: skipping member 'y'")

    @job
    def one_warning():
        warn_from_library()

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = ensure_dagster_home(tmp_path / "home")
    with DagsterInstance.from_config(str(home)) as instance:
        result = one_warning.execute_in_process(instance=instance)
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("skipping member 'y'" in m for m in messages)
