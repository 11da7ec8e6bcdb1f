"""The commands a user types for datasets: hpc-workflows datasets ..., and Dagster's own dg."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.assets.conftest import dataset_doc
from tests.conftest import REPO

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _run(args: list[str], folder: Path, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HPCW_DATASETS=str(folder), DAGSTER_HOME=str(home))
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_check_names_the_bad_file_and_field(dataset_dir, tmp_path, dagster_home):
    bad = dataset_doc(tmp_path)
    bad["output"]["compression_level"] = 12
    (dataset_dir / "bad_level.yaml").write_text(yaml.safe_dump(bad))
    done = _run([str(BIN / "hpc-workflows"), "datasets", "check"], dataset_dir, dagster_home)
    assert done.returncode == 1
    assert "tas_daily.yaml: OK" in done.stdout
    assert "bad_level.yaml" in done.stderr and "output.compression_level" in done.stderr
    assert "Traceback" not in done.stderr


def test_dg_lists_launches_a_range_and_status_follows(dataset_dir, dagster_home):
    listed = _run([str(BIN / "dg"), "list", "defs"], dataset_dir, dagster_home)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "tas_daily/regridded" in listed.stdout and "fetch_and_regrid" in listed.stdout
    checked = _run([str(BIN / "dg"), "check", "defs"], dataset_dir, dagster_home)
    assert checked.returncode == 0, checked.stderr[-2000:]

    launched = _run([str(BIN / "dg"), "launch", "--assets", "tas_daily/regridded", "--partition-range",
                     "2020-01-01...2020-01-02"], dataset_dir, dagster_home)
    assert launched.returncode == 0, (launched.stdout[-2000:], launched.stderr[-3000:])
    status = _run([str(BIN / "hpc-workflows"), "datasets", "status", "tas_daily"], dataset_dir, dagster_home)
    assert status.returncode == 0, status.stderr
    assert "2 of 6 daily partitions complete" in status.stdout
    assert "missing 2020-01-03...2020-01-06 (4)" in status.stdout
    synced = _run([str(BIN / "hpc-workflows"), "datasets", "sync"], dataset_dir, dagster_home)
    assert synced.returncode == 0 and "tas_daily: 2/6 complete on disk" in synced.stdout, synced
