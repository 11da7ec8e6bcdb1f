"""Bad input gives a clear error naming the source and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpc_workflows.fetch import FetchError, FetchSettings, Source, fetch


def test_unknown_url_scheme(tmp_path):
    with pytest.raises(FetchError) as info:
        fetch(Source(key="k", url="gopher://h/a.tar"), tmp_path, FetchSettings())
    assert info.value.field == "url" and "'gopher'" in str(info.value) and "supported" in str(info.value)
    assert "'k'" in str(info.value)


def test_transport_mismatching_the_url(tmp_path):
    with pytest.raises(FetchError, match="cannot fetch a 'file' URL"):
        fetch(Source(key="k", url="/a/b.tar"), tmp_path, FetchSettings(transport="http"))


@pytest.mark.parametrize("checksum", ["sha256:123", "sha1:" + "a" * 40, "nothex", "md5:" + "g" * 32])
def test_checksum_format_errors(checksum):
    with pytest.raises(ValueError, match=r"field: checksum") as info:
        Source(key="k", url="https://h/a.tar", checksum=checksum)
    assert "https://h/a.tar" in str(info.value)


def test_non_writable_destination_names_the_field(tmp_path):
    path = tmp_path / "a.nc"
    path.write_bytes(b"x")
    src = Source(key="k", url=str(path))
    # /sys refuses new files even to root, unlike permission bits.
    for dest in (Path("/sys/hpc_workflows_dest"), path / "sub"):
        with pytest.raises(FetchError) as info:
            fetch(src, dest, FetchSettings())
        assert info.value.field == "dest_dir" and str(dest) in str(info.value) and "not writable" in str(info.value)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["moo", "get", "{src}"], r"must contain \{dest\}"),
        (["moo", "get", "{src", "{dest}"], "malformed"),
        (["moo", "get", "{source}", "{dest}"], r"unknown placeholder \{source\}"),
        (["moo", "get", "{src!r}", "{dest}"], "unknown placeholder"),
        ("moo get {src} {dest}", "list of strings"),
        ([], "list of strings"),
    ],
)
def test_malformed_command_templates(command, message):
    with pytest.raises(ValueError, match=message) as info:
        FetchSettings(transport="command", command=command)
    assert "FetchSettings.command" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"transport": "ftp"}, "transport"),
        ({"transport": "command"}, "command"),
        ({"retries": -1}, "retries"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"max_connections_per_host": 0}, "max_connections_per_host"),
        ({"checksum_sidecar": "sha1"}, "checksum_sidecar"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"FetchSettings.{field}"):
        FetchSettings(**kwargs)


def test_settings_from_mapping_rejects_unknown_keys():
    assert FetchSettings.from_mapping({"retries": 2}).retries == 2
    with pytest.raises(ValueError, match="unknown fetch setting.*retry"):
        FetchSettings.from_mapping({"retry": 2})


def test_bad_key():
    with pytest.raises(ValueError, match=r"field: key"):
        Source(key="2020-02-14", url="https://h/a")


def test_unknown_host_fails_at_once_without_retries(tmp_path):
    """`.invalid` never resolves (RFC 2606): DNS answers "not known" at once, so no retries."""
    settings = FetchSettings(retries=3, backoff_initial=5.0, host_lock_dir=None)
    with pytest.raises(FetchError) as info:
        fetch(Source(key="k", url="http://no-such-host.invalid/a.nc"), tmp_path, settings)
    assert info.value.attempts == 1 and info.value.field == "url"
    assert "'no-such-host.invalid'" in str(info.value) and "not known to DNS" in str(info.value)
