"""A run's batch-job workers answer only their owner, like local ones (issue 12).

The workers of the debug partition run on this node on loopback, so the second real unix user
(tests/second_user.py) can reach every port they listen on: worker, nanny and HTTP server.
TLS refuses its clients and RPCs; the HTTP server (no authentication in distributed) must have
no routes: Prometheus metrics, call stacks and logs are not for other users.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hpc_workflows.hpc.clusters import open_cluster
from hpc_workflows.hpc.settings import validate_executor_settings
from tests.second_user import OTHER_PYTHON, run_as_other

from .conftest import batch_cluster, wait_until

PROBE = Path(__file__).with_name("other_user_probe.py")

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("testbed")]


def _ports(workers: dict) -> set[int]:
    ports = set()
    for address, info in workers.items():
        ports.add(urlsplit(address).port)
        if info.get("nanny"):
            ports.add(urlsplit(info["nanny"]).port)
        ports |= set((info.get("services") or {}).values())
    return ports


def test_batch_workers_refuse_another_user(other_user, tmp_path):
    settings = validate_executor_settings({"cluster": {"slurm": batch_cluster(tmp_path)}, "scale": 1})
    rc = open_cluster(settings, "dagster-batchsec")
    try:
        rc.scale(1, 1)
        wait_until(lambda: rc.worker_count() >= 1, 180, "a batch worker to connect")
        workers = rc.client.scheduler_info()["workers"]
        ports = _ports(workers)
        assert any((w.get("services") or {}) for w in workers.values()), "no worker HTTP port to probe"
        out = run_as_other([OTHER_PYTHON, str(PROBE), rc.cluster.scheduler_address, *map(str, sorted(ports))],
                           timeout=240)
        assert out.returncode == 0, out.stderr[-3000:]
        results = json.loads(out.stdout.strip().splitlines()[-1])
        ways_in = {k: v for k, v in results.items() if not v.startswith("refused")}
        assert not ways_in, f"another user got in: {ways_in}"
        # ... while the owner's client works.
        assert rc.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    finally:
        rc.close()
