"""What the coordinator prints: the job scripts' run of fetch_and_regrid, on a local cluster.

The job log (and a terminal) shows INFO and above: no DEBUG line per Dagster event, no
SupersessionWarning from ``dagster job execute``, no shutdown tracebacks; the run history
still holds every event. Runs ``hpcw_setup`` + ``hpcw_run_job`` of job_scripts/lib/common.sh,
as run_prod.sh does, with the demo's config (offline sample data, local Dask cluster).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

NOISE = (" - DEBUG - ", "SupersessionWarning", "Traceback", "CommClosedError", "StreamClosedError",
         "distributed.sizeof")


@pytest.mark.slow
def test_coordinator_output_is_info_and_quiet_and_history_keeps_every_event(tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    cfg["ops"]["fetch_and_regrid"]["config"]["output"]["directory"] = str(tmp_path / "out")
    cfg["ops"]["fetch_and_regrid"]["config"]["output"].pop("check_area_means", None)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "dagster_home"
    env = dict(os.environ, HPCW_PROJECT_DIR=str(REPO), DAGSTER_HOME=str(home))
    env.pop("PYTHONWARNINGS", None)
    script = f'source job_scripts/lib/common.sh && hpcw_setup && hpcw_run_job "{config}"'
    proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "run succeeded" in out, out[-4000:]
    for noise in NOISE:
        assert noise not in out, f"{noise!r} in the coordinator output:\n{out[-4000:]}"

    import dagster as dg
    from dagster._core.events import DagsterEventType

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        logs = instance.all_logs(run.run_id)
    kinds = {r.dagster_event.event_type for r in logs if r.dagster_event}
    # DEBUG-level events are stored even though the console left them out.
    assert {DagsterEventType.RUN_START, DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS,
            DagsterEventType.RUN_SUCCESS} <= kinds
