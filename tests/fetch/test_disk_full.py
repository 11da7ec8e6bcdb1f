"""A full filesystem is reported as such ("no space left on <fs>: N free, about M needed"),
before writing where the size is known and after a failed write, without retries.

Uses a real 1 MiB tmpfs mounted by the test (needs root, as the CI machine runs the suite).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.diskspace import NoSpaceLeft
from hpc_workflows.fetch import FetchError, FetchSettings, Source, fetch, unpack
from hpc_workflows.write.netcdf import write_netcdf_atomic

MB = 1 << 20


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the CI machine runs the suite as root)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _random_ds(nbytes: int) -> xr.Dataset:
    n = nbytes // 8
    return xr.Dataset({"a": (("x",), np.random.default_rng(0).random(n))})


def test_writer_refuses_before_writing_what_cannot_fit(small_fs):
    with pytest.raises(NoSpaceLeft) as err:
        write_netcdf_atomic(_random_ds(4 * MB), small_fs / "out.nc", compression_level=0)
    message = str(err.value)
    assert message.startswith(f"no space left on {small_fs}: ")
    assert "free, about 4.0 MiB needed" in message and "out.nc" in message
    assert list(small_fs.iterdir()) == []


def test_writer_failure_on_a_full_disk_says_so(small_fs):
    """Compressed random data passes the estimate, then netCDF-C fails (HDF error / EACCES)."""
    with pytest.raises(NoSpaceLeft) as err:
        write_netcdf_atomic(_random_ds(4 * MB), small_fs / "out.nc", compression_level=1)
    assert str(err.value).startswith(f"no space left on {small_fs}: ")
    assert "Permission denied" not in str(err.value)
    assert isinstance(err.value, ValueError)  # the pipeline fails such a step once, no retries
    assert list(small_fs.iterdir()) == []  # the partial file is gone


def test_http_download_that_cannot_fit_fails_once_naming_the_filesystem(server, small_fs, fast_settings):
    url = server.add("/radar/20200214.tar", os.urandom(2 * MB))
    with pytest.raises(FetchError) as err:
        fetch(Source(key="20200214", url=url), small_fs / "dl", fast_settings)
    assert err.value.field == "dest_dir" and err.value.attempts == 1
    assert f"no space left on {small_fs}" in str(err.value) and "about 2.0 MiB needed" in str(err.value)
    assert len(server.requests()) == 1


def test_archive_client_dying_on_a_full_disk_is_not_retried(moo, small_fs):
    (moo / "radar").mkdir()
    (moo / "radar" / "20200214.tar").write_bytes(os.urandom(2 * MB))
    settings = FetchSettings(transport="command", command=["moo", "get", "-f", "{src}", "{dest}"], retries=3,
                             backoff_initial=0.01, backoff_max=0.02)
    with pytest.raises(FetchError) as err:
        fetch(Source(key="20200214", url="moose:/radar/20200214.tar"), small_fs / "dl", settings)
    assert err.value.attempts == 1 and f"no space left on {small_fs}" in str(err.value)
    assert not list((small_fs / "dl").glob("20200214.tar*"))


def test_unpack_on_a_full_disk_is_not_called_corrupt(tmp_path, small_fs):
    archive = tmp_path / "day.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("radar/big.nc")
        info.size = 2 * MB
        tar.addfile(info, io.BytesIO(os.urandom(2 * MB)))
    with pytest.raises(NoSpaceLeft) as err:
        unpack(archive, small_fs / "extract")
    assert "corrupt" not in str(err.value) and "member 'radar/big.nc'" in str(err.value)
    assert not list((small_fs / "extract").rglob("*.part"))


@pytest.mark.slow
def test_full_output_filesystem_fails_the_step_once_with_the_real_cause(server, small_fs, tmp_path):
    """Through the job: no step retries, and the UI's failure says "no space left on ..."."""
    from dagster import DagsterEventType, DagsterInstance

    from hpc_workflows.definitions import fetch_and_regrid_job
    from tests.pipeline.test_http_workflow import _day_file

    server.add("/data/20200214.nc", _day_file("20200214"))
    cfg = {
        "window": {"start": "2020-02-14", "end": "2020-02-14", "step": "24h"},
        "source": {"template": server.url("/data/{dt:%Y%m%d}.nc"), "retries": 1, "backoff_seconds": 0.01},
        "regrid": {"method": "bilinear", "target": {"name": "global_0.25deg"}},
        "output": {"directory": str(small_fs / "out"), "workdir": str(tmp_path / "work"),
                   "compression_level": 0, "name": "tas"},
    }
    with DagsterInstance.ephemeral() as instance:
        result = fetch_and_regrid_job.execute_in_process(
            run_config={"ops": {"fetch_and_regrid": {"config": cfg}}}, instance=instance, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert len(failures) == 1
    text = str(failures[0].event_specific_data.error) + str(failures[0].event_specific_data.error.cause)
    assert f"no space left on {small_fs}" in text, text[-2000:]
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
