"""Unpacking is capped while streaming (archive bombs) and skips non-regular members loudly."""

from __future__ import annotations

import gzip
import io
import logging
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from hpc_workflows.fetch import unpack
from hpc_workflows.fetch.unpack import UnpackLimitExceeded, UnpackLimits

MB = 1 << 20


def _gzip_bomb(path: Path, expanded_mb: int) -> Path:
    """A .gz whose content is ``expanded_mb`` MiB of one byte, in about 1/1000 of that on disk.

    Built from concatenated gzip members (which gunzip reads as one stream), so making it is
    cheap: one 16 MiB block compressed once.  Not zeros: those read as an empty tar archive.
    """
    block = gzip.compress(b"A" * (16 * MB), compresslevel=9)
    path.write_bytes(block * (expanded_mb // 16))
    return path


def test_gzip_bomb_stops_at_the_ratio_while_streaming(tmp_path):
    """The writer runs under RLIMIT_FSIZE: if the cap were checked only after writing, the
    process would die of SIGXFSZ / EFBIG instead of raising our error."""
    bomb = _gzip_bomb(tmp_path / "radar_20200214.nc.gz", 256)
    archive_size = bomb.stat().st_size
    assert archive_size < MB
    limit = int(200 * archive_size)  # the default ratio
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit + 4 * MB}, {limit + 4 * MB}))
        from hpc_workflows.fetch.unpack import UnpackLimitExceeded, unpack
        try:
            unpack({str(bomb)!r}, {str(tmp_path / 'work')!r})
        except UnpackLimitExceeded as exc:
            print(exc)
            sys.exit(0)
        sys.exit(1)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    message = proc.stdout
    assert str(bomb) in message and "radar_20200214.nc.gz" in message
    assert "source.unpack_max_ratio=200" in message
    # Nothing half-written stays behind under any name.
    assert list((tmp_path / "work").iterdir()) == []


def test_absolute_limit_names_member_and_setting(tmp_path):
    path = tmp_path / "day.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("a.nc", "b.nc", "c.nc"):
            info = tarfile.TarInfo(f"radar/{name}")
            info.size = MB
            tar.addfile(info, io.BytesIO(bytes(MB)))
    limits = UnpackLimits(max_ratio=1000, max_bytes=int(2.5 * MB))
    with pytest.raises(UnpackLimitExceeded) as err:
        unpack(path, tmp_path / "work", limits=limits)
    message = str(err.value)
    assert "radar/c.nc" in message and str(path) in message
    assert f"source.unpack_max_bytes={int(2.5 * MB)}" in message
    assert not list((tmp_path / "work").rglob("*.part"))
    # Within the limits the same archive unpacks.
    assert len(unpack(path, tmp_path / "work2", limits=UnpackLimits(max_bytes=3 * MB))) == 3


def test_zip_bomb_member_is_stopped(tmp_path):
    path = tmp_path / "day.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.nc", b"x" * 1000)
        zf.writestr("zeros.nc", bytes(64 * MB))
    with pytest.raises(UnpackLimitExceeded, match="'zeros.nc'.*source.unpack_max_ratio"):
        unpack(path, tmp_path / "work")
    assert not (tmp_path / "work" / "zeros.nc").exists()


def test_links_and_devices_are_skipped_and_logged(tmp_path, caplog):
    path = tmp_path / "day.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("radar/data.nc")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"data"))
        for name, kind, target in (("radar/sym.nc", tarfile.SYMTYPE, "/etc/passwd"),
                                   ("radar/hard.nc", tarfile.LNKTYPE, "radar/data.nc"),
                                   ("radar/dev.nc", tarfile.CHRTYPE, ""),
                                   ("radar/fifo.nc", tarfile.FIFOTYPE, "")):
            link = tarfile.TarInfo(name)
            link.type = kind
            link.linkname = target
            tar.addfile(link)
    with caplog.at_level(logging.WARNING, logger="hpc_workflows.fetch.unpack"):
        files = unpack(path, tmp_path / "work")
    assert [f.name for f in files] == ["data.nc"]
    text = caplog.text
    assert "'radar/sym.nc' (symbolic link to '/etc/passwd')" in text
    assert "'radar/hard.nc' (hard link to 'radar/data.nc')" in text
    assert "'radar/dev.nc' (device file)" in text and "'radar/fifo.nc' (FIFO)" in text


def test_limits_are_validated():
    with pytest.raises(ValueError, match="source.unpack_max_ratio"):
        UnpackLimits(max_ratio=0.5)
    with pytest.raises(ValueError, match="source.unpack_max_bytes"):
        UnpackLimits(max_bytes=0)
