"""A backfill of 20 dates launched through the webserver's GraphQL API, with the daemon running,
completes as ONE run whose steps run on SLURM batch-job workers (the dataset's execution:)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.assets.conftest import dataset_doc, write_source_day
from tests.conftest import REPO
from tests.hpc.conftest import batch_cluster, wait_until

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

DATES = [dt.date(2021, 3, 1) + dt.timedelta(days=i) for i in range(20)]
LAUNCH = """
mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename
  ... on LaunchBackfillSuccess { backfillId }
  ... on PythonError { message }
  ... on InvalidSubsetError { message } } }
"""
STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status runs(limit: 10) { runId status } } } }
"""


def _graphql(url: str, query: str, variables: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps({"query": query, "variables": variables}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.loads(resp.read())
    assert "errors" not in body, body
    return body["data"]


def _failures(home: Path) -> str:
    """The error texts of the instance's failed runs (for an assertion message)."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    out = []
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for run in instance.get_runs():
            for r in instance.all_logs(run.run_id):
                err = getattr(r.dagster_event.event_specific_data, "error", None) if r.dagster_event else None
                if err is not None:
                    out.append(err.to_string()[-2000:])
    return "\n".join(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_backfill_of_20_dates_via_graphql_runs_on_slurm(testbed, dagster_home, tmp_path):
    folder = tmp_path / "datasets"
    folder.mkdir()
    doc = dataset_doc(tmp_path, partitioning={"period": "daily", "start": "2021-01-01"})
    doc["execution"] = {"config": {"cluster": {"slurm": batch_cluster(tmp_path)}, "scale": 2}}
    (folder / "tas_daily.yaml").write_text(yaml.safe_dump(doc))
    for day in DATES:
        write_source_day(tmp_path / "src", day)
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home), HPCW_DATASETS=str(folder),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    logs = [open(tmp_path / "daemon.log", "w"), open(tmp_path / "ui.log", "w")]
    procs = [
        subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-m", "hpc_workflows"], cwd=tmp_path,
                         env=env, stdout=logs[0], stderr=subprocess.STDOUT),
        subprocess.Popen([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m",
                          "hpc_workflows"], cwd=tmp_path, env=env, stdout=logs[1], stderr=subprocess.STDOUT),
    ]
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        def ui_up():
            try:
                return _graphql(url, "{ version }", {})
            except OSError:
                return None

        wait_until(ui_up, 180, "the webserver to answer")
        params = {"partitionNames": [str(d) for d in DATES],
                  "assetSelection": [{"path": ["tas_daily", "regridded"]}], "fromFailure": False}
        launched = _graphql(url, LAUNCH, {"p": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        def finished():
            status = _graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            return status if status["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED",
                                                  "COMPLETED_FAILED", "CANCELED") else None

        status = wait_until(finished, 900, "the backfill to finish", interval=2.0)
        assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (status, _failures(dagster_home))
        assert len(status["runs"]) == 1  # single-run backfill policy: one run for 20 dates
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()

    from dagster import AssetKey, DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        done = instance.get_materialized_partitions(AssetKey(["tas_daily", "regridded"]))
        assert sorted(done) == [str(d) for d in DATES]
        run_id = status["runs"][0]["runId"]
        engine = " ".join(r.dagster_event.message or "" for r in instance.all_logs(run_id)
                          if r.dagster_event and r.dagster_event.event_type_value == "ENGINE_EVENT")
    assert "slurm" in engine.lower(), engine[:2000]
    assert len(list((tmp_path / "out").glob("tas2deg_2021*.nc"))) == 20
