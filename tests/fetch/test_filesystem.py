"""Filesystem transport: plain paths and file:// URLs, hard links, copies, atomic rename."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hpc_workflows.fetch import FetchError, FetchSettings, Source, fetch


def _file(tmp_path: Path, name: str = "20200214.nc", size: int = 200_000) -> tuple[Path, bytes]:
    src_dir = tmp_path / "origin dir"
    src_dir.mkdir(exist_ok=True)
    data = os.urandom(size)
    path = src_dir / name
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("link", [True, False])
def test_plain_path_is_linked_or_copied_and_verified(tmp_path, link):
    path, data = _file(tmp_path)
    src = Source(key="20200214", url=str(path), checksum="sha256:" + hashlib.sha256(data).hexdigest())
    result = fetch(src, tmp_path / "dl", FetchSettings(link=link))
    assert result.path.read_bytes() == data and result.transport == "filesystem"
    assert (result.path.stat().st_ino == path.stat().st_ino) is link
    assert fetch(src, tmp_path / "dl", FetchSettings(link=link)).skipped


def test_file_url_with_escaped_characters(tmp_path):
    path, data = _file(tmp_path, name="a b#c.nc")
    url = "file://" + str(path).replace(" ", "%20").replace("#", "%23")
    result = fetch(Source(key="k", url=url), tmp_path / "dl", FetchSettings(link=False))
    assert result.path.name == "a b#c.nc" and result.path.read_bytes() == data


def test_missing_file_is_a_clear_permanent_error(tmp_path):
    with pytest.raises(FetchError) as info:
        fetch(Source(key="k", url=str(tmp_path / "nope.nc")), tmp_path / "dl", FetchSettings())
    assert info.value.field == "url" and info.value.attempts == 1 and "does not exist" in str(info.value)


def test_bad_checksum_leaves_no_final_file_and_does_not_touch_the_origin(tmp_path):
    path, data = _file(tmp_path)
    src = Source(key="k", url=str(path), checksum="md5:" + "0" * 32)
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch(src, tmp_path / "dl", FetchSettings(retries=1, backoff_initial=0.01))
    assert not (tmp_path / "dl" / path.name).exists() and not (tmp_path / "dl" / (path.name + ".part")).exists()
    assert path.read_bytes() == data


def test_size_field_is_checked(tmp_path):
    path, _ = _file(tmp_path, size=1000)
    with pytest.raises(FetchError) as info:
        fetch(Source(key="k", url=str(path), size=999), tmp_path / "dl", FetchSettings(retries=0))
    assert info.value.field == "size" and "999" in str(info.value)
