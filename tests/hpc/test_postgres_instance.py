"""The production Dagster instance: a user-space PostgreSQL server that only its owner reaches.

Real parts throughout: Debian's initdb/pg_ctl/postgres, dagster-postgres, runs executed through
the HPC executor (local and SLURM workers open the instance themselves), and a second real unix
user trying to get in.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.second_user import run_as_other

pytestmark = pytest.mark.slow

JOBS_FILE = REPO / "tests" / "hpc" / "executor_jobs.py"


@pytest.fixture(scope="module")
def pg_home():
    """A DAGSTER_HOME whose dagster.yaml uses a fresh private PostgreSQL server."""
    from hpc_workflows import pgserver

    # Traversable (0711) but not listable: as root the server runs as 'postgres', which must
    # reach its data folder; nobody may list what is in here.
    base = Path(tempfile.mkdtemp(prefix="hpcw-pg-", dir="/tmp"))
    os.chmod(base, 0o711)
    home = base / "home"
    server = pgserver.start(home)
    pgserver.write_instance_yaml(home, server)
    try:
        yield home, server
    finally:
        pgserver.stop(home)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def _password(server) -> str:
    return Path(server.passfile).read_text().strip().rsplit(":", 1)[1]


def test_start_is_idempotent_and_instance_uses_postgres(pg_home):
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from hpc_workflows import pgserver

    home, server = pg_home
    again = pgserver.start(home)
    assert again == server
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"


def test_no_secret_in_config_and_private_files(pg_home):
    home, server = pg_home
    password = _password(server)
    assert len(password) >= 32
    root = home / "postgres"
    for path in (home / "dagster.yaml", root / "server.json", root / "server.log"):
        assert password not in path.read_text(), f"password in {path}"
    # Only the owner can read the secret or reach the socket and data.
    for path, mode in ((root, 0o700), (root / "data", 0o700), (root / "run", 0o700),
                       (Path(server.passfile), 0o600), (home / "dagster.yaml", 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
    cfg = yaml.safe_load((home / "dagster.yaml").read_text())
    assert "password" not in json.dumps(cfg)


def test_other_user_cannot_connect(pg_home, other_user):
    _, server = pg_home
    # TCP: the role needs the password, which the other user cannot read.
    tcp = run_as_other(["psql", "-w", "-h", "127.0.0.1", "-p", str(server.port), "-U", server.role,
                        "-d", server.db, "-c", "select 1"])
    assert tcp.returncode != 0
    assert "password" in tcp.stderr.lower(), tcp.stderr
    # Reading the passfile is refused.
    read = run_as_other(["cat", server.passfile])
    assert read.returncode != 0 and "permission denied" in read.stderr.lower()
    # The Unix socket sits in a 0700 folder: not even a connection.
    sock = run_as_other(["psql", "-w", "-h", server.socket_dir, "-p", str(server.port), "-U", server.role,
                         "-d", server.db, "-c", "select 1"])
    assert sock.returncode != 0
    assert "permission denied" in sock.stderr.lower(), sock.stderr
    # The owner, with the passfile, gets in over TCP (so the refusals above are about who asks).
    import psycopg2

    conn = psycopg2.connect(**server.conninfo())
    with conn.cursor() as cur:
        cur.execute("select current_user")
        assert cur.fetchone()[0] == server.role
    conn.close()


def _execute(home: Path, workdir: Path, execution: dict, fan: int) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "run.yaml"
    cfg.write_text(yaml.safe_dump({"execution": {"config": execution}}))
    env = dict(os.environ, DAGSTER_HOME=str(home), HPCWF_TEST_FAN=str(fan),
               HPCWF_TEST_OUT=str(workdir / "out.json"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    dagster = Path(sys.executable).parent / "dagster"
    return subprocess.Popen([str(dagster), "job", "execute", "-f", str(JOBS_FILE), "-j", "fan_job",
                             "-c", str(cfg)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run_statuses(home: Path) -> dict[str, str]:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return {r.run_id: r.status.value for r in instance.get_runs()}


def test_two_concurrent_runs(pg_home, tmp_path):
    """Two runs at once, each with two local worker processes writing events concurrently."""
    home, _ = pg_home
    before = set(_run_statuses(home))
    procs = [_execute(home, tmp_path / f"run{i}", {"cluster": {"local": {}}, "scale": 2}, fan=6)
             for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    new = {k: v for k, v in _run_statuses(home).items() if k not in before}
    assert sorted(new.values()) == ["SUCCESS", "SUCCESS"], new
    for i in range(2):
        results = json.loads((tmp_path / f"run{i}" / "out.json").read_text())["results"]
        assert len(results) == 6


@pytest.mark.slurm
def test_slurm_run_against_postgres(pg_home, tmp_path, testbed):
    """Worker batch jobs open the Postgres instance from their nodes and record their steps."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from tests.hpc.conftest import batch_cluster

    home, _ = pg_home
    before = set(_run_statuses(home))
    proc = _execute(home, tmp_path / "slurm", {"cluster": {"slurm": batch_cluster(tmp_path)}, "scale": 2},
                    fan=4)
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out[-3000:]
    new = [k for k in _run_statuses(home) if k not in before]
    assert len(new) == 1
    results = json.loads((tmp_path / "slurm" / "out.json").read_text())["results"]
    assert all(r["slurm_job_id"] for r in results), results
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        steps = {r.step_key for r in instance.all_logs(new[0]) if r.step_key}
    assert {f"work[k{i}]" for i in range(4)} <= steps
