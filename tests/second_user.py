"""A second, real unix user on this node, for the shared-node security tests.

``ci/second-user.sh`` creates the account ``hpcw-other`` and a world-readable venv with the same
dask/distributed as ours (it cannot use our .venv: its python lives under a 0700 home). Tests
run code as that user to check that what we start answers only its owner.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

OTHER_USER = os.environ.get("HPCW_OTHER_USER", "hpcw-other")
OTHER_PYTHON = "/opt/hpcw-other/venv/bin/python"


def _ready() -> bool:
    try:
        import pwd

        pwd.getpwnam(OTHER_USER)
    except KeyError:
        return False
    return Path(OTHER_PYTHON).exists()


@pytest.fixture(scope="session")
def other_user() -> str:
    """The second user's name (account and venv set up by ci/second-user.sh, idempotently)."""
    if os.geteuid() != 0:
        pytest.fail("the shared-node security tests need root to act as a second user")
    if not _ready():
        subprocess.run(["bash", str(REPO / "ci" / "second-user.sh")], check=True, timeout=900)
    return OTHER_USER


def run_as_other(args: list[str], *, timeout: float = 120, input: str | None = None,
                 cwd: str | Path = "/") -> subprocess.CompletedProcess:
    """Run ``args`` as the second user (no inherited environment beyond PATH and LANG)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
    return subprocess.run(
        ["/usr/sbin/runuser", "-u", OTHER_USER, "--", *args],
        capture_output=True, text=True, timeout=timeout, env=env, input=input, cwd=cwd,
    )


def python_as_other(code: str, *, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run Python ``code`` as the second user, in its venv (dask/distributed importable)."""
    return run_as_other([OTHER_PYTHON, "-c", code], timeout=timeout)
