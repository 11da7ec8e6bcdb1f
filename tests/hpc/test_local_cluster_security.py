"""The local Dask cluster answers only its owner (issue 12, goal 2).

A second real unix user (tests/second_user.py) tries every listening port the run's local
cluster opened (scheduler, nannies, workers, any dashboard): as a Dask client over plain TCP
and over TLS with credentials of its own, by RPC straight to a worker (``run(os.getuid)``)
and by HTTP. Every attempt must be refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from hpc_workflows.hpc.clusters import open_cluster
from hpc_workflows.hpc.settings import validate_executor_settings
from tests.second_user import OTHER_PYTHON, other_user, run_as_other  # noqa: F401 - fixture

from .conftest import wait_until

PROBE = Path(__file__).with_name("other_user_probe.py")


def _listening_ports() -> set[int]:
    """TCP ports this process and its children listen on."""
    ports = set()
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
    return ports


def _probe_as_other(scheduler: str, ports: set[int]) -> dict[str, str]:
    out = run_as_other([OTHER_PYTHON, str(PROBE), scheduler, *map(str, sorted(ports))], timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_local_cluster_refuses_another_user(other_user, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _listening_ports()
    # The defaults a dev config gets: nothing about security written by the user.
    settings = validate_executor_settings({"cluster": {"local": {}}, "scale": 1})
    rc = open_cluster(settings, "dagster-localsec")
    try:
        wait_until(lambda: rc.worker_count() >= 1, 60, "a local worker to connect")
        scheduler = rc.cluster.scheduler_address
        ports = _listening_ports() - before
        # scheduler, one nanny, one worker at least: the probe covers them all
        assert len(ports) >= 3, ports
        # Every user can read a process's command line: the workers get the run's key
        # through the spawn pipe, never there. (distributed writes it to disk only for an
        # instant, inside a 0700 temporary directory, to load it into the SSL context.)
        for proc in psutil.Process().children(recursive=True):
            assert "PRIVATE KEY" not in " ".join(proc.cmdline())
        results = _probe_as_other(scheduler, ports)
        ways_in = {k: v for k, v in results.items() if not v.startswith("refused")}
        assert not ways_in, f"another user got in: {ways_in}"
        # ... while the owner's own client works as before.
        assert set(rc.client.run(os.getuid).values()) == {os.getuid()}
        assert rc.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    finally:
        rc.close()
