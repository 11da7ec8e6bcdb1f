"""Conversions of a user's archive members are not readable by another user of the node,
even when the output folder is a shared (world-readable) one."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hpc_workflows.fetch import merge_daily
from tests.formats.nimrod_files import write_nimrod
from tests.second_user import run_as_other

pytestmark = pytest.mark.slow


def test_member_conversions_are_private_while_merging(other_user):
    shared = Path(tempfile.mkdtemp(prefix="hpcw-shared-"))
    try:
        shared.chmod(0o755)  # a project folder other users may read
        members = [write_nimrod(shared / f"{m:03d}.dat", np.full((300, 300), m, "int16"),
                                validity=dt.datetime(2020, 2, 14) + dt.timedelta(minutes=5 * m))
                   for m in range(30)]
        for m in members:
            m.chmod(0o644)
        out = shared / "merged" / "day.nc"
        out.parent.mkdir(mode=0o755)
        scratch = out.with_name(f".{out.name}.members")
        errors: list[BaseException] = []
        worker = threading.Thread(target=lambda: _merge(members, out, errors))
        worker.start()
        deadline = time.monotonic() + 120
        while not (scratch.is_dir() and any(scratch.glob("*.nc"))):  # a conversion is written
            assert worker.is_alive() and time.monotonic() < deadline, "merge ended before the check"
            time.sleep(0.01)
        listing = run_as_other(["ls", str(scratch)])
        reading = run_as_other(["dd", f"if={next(scratch.glob('*.nc'))}", "of=/dev/null", "count=1"])
        worker.join(timeout=300)
        assert not errors, errors
        assert listing.returncode != 0 and "Permission denied" in listing.stderr
        assert reading.returncode != 0
        assert out.is_file() and not scratch.exists()  # removed once the merge is written
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _merge(members, out, errors):
    try:
        merge_daily(members, out)
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)
