"""HTTP transport against a real loopback server with injected faults.

Every test also checks the invariant that matters most: a file under its final name is
always complete and correct (or absent).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from hpc_workflows.fetch import FetchError, Source, fetch
from tests.fetch.fault_server import Fault, FaultServer, sha256_hex

SIZE = 1_000_000


@pytest.fixture
def payload() -> bytes:
    return os.urandom(SIZE)


def _source(server: FaultServer, payload: bytes, name: str = "20200214.tar", checksum: bool = True) -> Source:
    url = server.add(f"/radar/{name}", payload)
    return Source(key="20200214", url=url, checksum=f"sha256:{sha256_hex(payload)}" if checksum else None)


def _final_ok_or_absent(path: Path, payload: bytes) -> None:
    assert not path.exists() or path.read_bytes() == payload, f"{path} exists but is corrupt"


def test_download_is_verified_and_rerun_fetches_nothing(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    first = fetch(src, tmp_path, fast_settings)
    assert first.path == tmp_path / "20200214.tar"
    assert first.path.read_bytes() == payload
    assert (first.bytes, first.attempts, first.skipped) == (SIZE, 1, False)
    assert first.sha256 == sha256_hex(payload)
    assert not (tmp_path / "20200214.tar.part").exists()

    second = fetch(src, tmp_path, fast_settings)
    assert second.skipped and second.attempts == 0
    assert second.sha256 == first.sha256
    assert len(server.requests()) == 1, "a re-run of a complete fetch must not contact the server"
    meta = second.as_metadata()
    assert meta["skipped"] is True and meta["sha256"] == first.sha256 and meta["key"] == "20200214"


def test_rerun_without_checksum_also_skips(server, payload, tmp_path, fast_settings):
    src = _source(server, payload, checksum=False)
    fetch(src, tmp_path, fast_settings)
    assert fetch(src, tmp_path, fast_settings).skipped
    assert len(server.requests()) == 1


def test_truncated_body_resumes_with_range_for_the_remainder_only(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("truncate", at=300_000))
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    log = server.requests("/radar/20200214.tar")
    assert [(r.range, r.status) for r in log] == [(None, 200), ("bytes=300000-", 206)]
    assert log[0].sent == 300_000 and log[1].sent == SIZE - 300_000
    assert log[1].if_range is not None, "a resume must carry If-Range so two versions are never spliced"
    assert (result.attempts, result.resumed_from) == (2, 300_000)


def test_connection_dropped_mid_body_resumes(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("drop", at=400_000))
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    log = server.requests("/radar/20200214.tar")
    assert len(log) == 2 and log[1].status == 206
    # A reset may discard bytes still in flight, so the client resumes at what it really has.
    start = int(log[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 400_000
    assert log[1].sent == SIZE - start
    assert result.resumed_from == start


def test_partial_from_an_earlier_run_is_resumed(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    (tmp_path / "20200214.tar.part").write_bytes(payload[:123_456])
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.range for r in server.requests()] == ["bytes=123456-"]
    assert server.requests()[0].sent == SIZE - 123_456


def test_complete_part_left_before_rename_is_finished_without_download(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    (tmp_path / "20200214.tar.part").write_bytes(payload)
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [(r.range, r.status, r.sent) for r in server.requests()] == [(f"bytes={SIZE}-", 416, 0)]


def test_stale_part_with_wrong_bytes_is_discarded_after_checksum_failure(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    (tmp_path / "20200214.tar.part").write_bytes(b"\0" * 1000)  # not a prefix of the file
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.range for r in server.requests()] == ["bytes=1000-", None]


def test_server_ignoring_range_restarts_cleanly(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("truncate", at=500_000), Fault("ignore_range"))
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.status for r in server.requests()] == [200, 200]


def test_500_then_success(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("status", status=500))
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.status for r in server.requests()] == [500, 200]
    assert result.attempts == 2 and "HTTP 500" in result.as_metadata()["retried_errors"]


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(server, payload, tmp_path, fast_settings, status):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("status", status=status, retry_after="1"))
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    first, second = server.requests()
    assert (first.status, second.status) == (status, 200)
    # Our own backoff would wait ~0.01 s: the gap shows the server's 1 s was respected.
    assert second.t - first.t >= 0.95


def test_retry_after_is_capped_by_settings(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("status", status=503, retry_after="3600"))
    fast_settings.retry_after_max = 0.1
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    first, second = server.requests()
    assert second.t - first.t < 5


def test_persistent_500_fails_after_retries_with_clear_error(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", *[Fault("status", status=500)] * 10)
    with pytest.raises(FetchError) as info:
        fetch(src, tmp_path, fast_settings)
    assert len(server.requests()) == fast_settings.retries + 1
    msg = str(info.value)
    assert "20200214" in msg and "HTTP 500" in msg and "4 attempt(s)" in msg
    assert not (tmp_path / "20200214.tar").exists()


def test_404_fails_fast_without_retry_storm(server, tmp_path, fast_settings):
    src = Source(key="20200214", url=server.url("/radar/missing.tar"))
    with pytest.raises(FetchError) as info:
        fetch(src, tmp_path, fast_settings)
    assert len(server.requests()) == 1
    err = info.value
    assert err.field == "url" and err.attempts == 1 and err.source == src
    assert "HTTP 404" in str(err) and "missing.tar" in str(err) and "check the url" in str(err)
    assert not (tmp_path / "missing.tar").exists() and not (tmp_path / "missing.tar.part").exists()


def test_wrong_bytes_once_are_refetched(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("corrupt"))
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload and result.attempts == 2
    # The corrupt copy must not be resumed from: the retry downloads everything.
    assert [r.range for r in server.requests()] == [None, None]


def test_wrong_checksum_never_produces_a_final_file(server, payload, tmp_path, fast_settings):
    url = server.add("/radar/20200214.tar", payload)
    src = Source(key="20200214", url=url, checksum="sha256:" + "0" * 64)
    with pytest.raises(FetchError) as info:
        fetch(src, tmp_path, fast_settings)
    assert info.value.field == "checksum"
    assert "checksum mismatch" in str(info.value) and sha256_hex(payload) in str(info.value)
    assert not (tmp_path / "20200214.tar").exists()
    assert not (tmp_path / "20200214.tar.part").exists()


def test_md5_checksum_is_verified(server, payload, tmp_path, fast_settings):
    import hashlib

    url = server.add("/radar/20200214.tar", payload)
    src = Source(key="20200214", url=url, checksum="md5:" + hashlib.md5(payload).hexdigest())
    assert fetch(src, tmp_path, fast_settings).verified == src.checksum


def test_stalled_response_times_out_and_resumes(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("stall", at=100_000))
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    log = server.requests()
    assert [r.range for r in log] == [None, "bytes=100000-"]
    assert "stalled" in result.as_metadata()["retried_errors"]


def test_stall_on_every_attempt_gives_clear_error(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    fast_settings.retries = 1
    server.inject("/radar/20200214.tar", Fault("stall", at=10), Fault("stall", at=10))
    with pytest.raises(FetchError, match="read_timeout"):
        fetch(src, tmp_path, fast_settings)
    _final_ok_or_absent(tmp_path / "20200214.tar", payload)
    assert not (tmp_path / "20200214.tar").exists()


def test_sha256_sidecar(server, payload, tmp_path, fast_settings):
    url = server.add("/radar/20200214.tar", payload)
    server.add("/radar/20200214.tar.sha256", f"{sha256_hex(payload)}  20200214.tar\n".encode())
    fast_settings.checksum_sidecar = "sha256"
    result = fetch(Source(key="20200214", url=url), tmp_path, fast_settings)
    assert result.verified == f"sha256:{sha256_hex(payload)}"


def test_wrong_sidecar_fails_and_missing_sidecar_names_the_field(server, payload, tmp_path, fast_settings):
    url = server.add("/radar/20200214.tar", payload)
    server.add("/radar/20200214.tar.sha256", ("f" * 64 + "\n").encode())
    fast_settings.checksum_sidecar = "sha256"
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch(Source(key="20200214", url=url), tmp_path, fast_settings)
    assert not (tmp_path / "20200214.tar").exists()
    other = server.add("/radar/20200215.tar", payload)
    with pytest.raises(FetchError) as info:
        fetch(Source(key="20200215", url=other), tmp_path, fast_settings)
    assert info.value.field == "checksum_sidecar" and "404" in str(info.value)


def test_existing_corrupt_final_file_is_replaced(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    (tmp_path / "20200214.tar").write_bytes(b"garbage")
    result = fetch(src, tmp_path, fast_settings)
    assert not result.skipped and result.path.read_bytes() == payload


def test_unreachable_host_gives_clear_error(tmp_path, fast_settings):
    with socket.socket() as sock:  # a port that is certainly closed: bound, then released
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = Source(key="20200214", url=f"http://127.0.0.1:{port}/radar/20200214.tar")
    fast_settings.retries = 1
    with pytest.raises(FetchError) as info:
        fetch(src, tmp_path, fast_settings)
    assert info.value.field == "url" and info.value.attempts == 2
    assert "cannot connect" in str(info.value) and str(port) in str(info.value)


def test_credentials_in_url_are_not_in_errors(server, tmp_path, fast_settings):
    url = f"http://user:s3cret@127.0.0.1:{server.port}/radar/missing.tar"
    with pytest.raises(FetchError) as info:
        fetch(Source(key="k", url=url), tmp_path, fast_settings)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("cap", [2, 6])
def test_per_host_connection_cap_holds_across_threads(server, tmp_path, fast_settings, cap):
    server.hold = 0.3  # each request takes a while, so uncapped requests would overlap
    data = {f"/f{i}.bin": os.urandom(1000) for i in range(6)}
    sources = [Source(key=f"k{i}", url=server.add(path, body)) for i, (path, body) in enumerate(data.items())]
    fast_settings.max_connections_per_host = cap
    fast_settings.read_timeout = 5.0
    errors: list[BaseException] = []

    def run(src: Source) -> None:
        try:
            fetch(src, tmp_path, fast_settings)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(server.requests()) == 6
    if cap == 2:
        assert server.max_active == 2
    else:
        assert server.max_active > 2  # the same load without a tight cap does overlap


def test_redirect_is_followed(server, payload, tmp_path, fast_settings):
    server.add("/mirror/20200214.tar", payload)
    url = server.url("/radar/20200214.tar")
    server.inject("/radar/20200214.tar", Fault("redirect", location="/mirror/20200214.tar"))
    result = fetch(Source(key="k", url=url, checksum=f"sha256:{sha256_hex(payload)}"), tmp_path, fast_settings)
    assert result.path.name == "20200214.tar" and result.path.read_bytes() == payload
    assert [(r.path, r.status) for r in server.requests()] == [("/radar/20200214.tar", 302), ("/mirror/20200214.tar", 200)]


def test_url_credentials_are_sent_as_basic_auth_but_not_to_another_host(server, payload, tmp_path, fast_settings):
    """``user:password@`` authenticates at the origin; a redirect to another host (a mirror
    named ``localhost`` here) must not receive the password."""
    server.add("/mirror/20200214.tar", payload)
    server.inject("/radar/20200214.tar", Fault("redirect", location=f"http://localhost:{server.port}/mirror/20200214.tar"))
    url = f"http://user:s%40cret@127.0.0.1:{server.port}/radar/20200214.tar"
    result = fetch(Source(key="k", url=url, checksum=f"sha256:{sha256_hex(payload)}"), tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    first, second = server.requests()
    assert first.authorization == "Basic dXNlcjpzQGNyZXQ="  # base64 of "user:s@cret"
    assert first.host == f"127.0.0.1:{server.port}"
    assert (second.path, second.host, second.authorization) == ("/mirror/20200214.tar", f"localhost:{server.port}", None)


def test_skip_and_retries_are_logged(server, payload, tmp_path, fast_settings, caplog):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("status", status=502))
    with caplog.at_level("INFO", logger="hpc_workflows.fetch"):
        fetch(src, tmp_path, fast_settings)
        fetch(src, tmp_path, fast_settings)
    text = caplog.text
    assert "attempt 1/4 failed (HTTP 502" in text and "retrying in" in text
    assert "already complete and verified; skipping" in text


def test_disk_errors_are_reported_as_destination_problems(server, payload, tmp_path, fast_settings, monkeypatch):
    """A write error (ENOSPC here, raised by the real file object's write) is not retried."""
    import errno

    import hpc_workflows.fetch.partfile as partfile

    src = _source(server, payload)
    real_open = open

    class FullDisk:
        def __init__(self, fh):
            self._fh = fh

        def write(self, chunk):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._fh, name)

    monkeypatch.setattr(partfile, "open", lambda *a, **k: FullDisk(real_open(*a, **k)), raising=False)
    with pytest.raises(FetchError) as info:
        fetch(src, tmp_path, fast_settings)
    assert info.value.field == "dest_dir" and "no space left on " in str(info.value)
    assert len(server.requests()) == 1
    assert not (tmp_path / "20200214.tar").exists()


def test_per_host_connection_cap_holds_across_processes(server, tmp_path, fast_settings):
    """Forked worker processes share the cap through flock'd slot files."""
    import multiprocessing

    import hpc_workflows.fetch.http  # noqa: F401 - imported before the fork, so children start at once

    server.hold = 0.5
    sources = [Source(key=f"k{i}", url=server.add(f"/p{i}.bin", os.urandom(1000))) for i in range(4)]
    fast_settings.max_connections_per_host = 2
    fast_settings.read_timeout = 10.0
    fast_settings.host_lock_dir = str(tmp_path / "slots")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=fetch, args=(s, tmp_path / "dl", fast_settings)) for s in sources]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(server.requests()) == 4
    assert server.max_active == 2


def test_two_processes_fetching_the_same_file_download_it_once(server, payload, tmp_path, fast_settings):
    import multiprocessing

    import hpc_workflows.fetch.http  # noqa: F401 - imported before the fork

    server.hold = 0.3
    src = _source(server, payload)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=fetch, args=(src, tmp_path, fast_settings)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert [(r.range, r.status) for r in server.requests()] == [(None, 200)]
    assert (tmp_path / "20200214.tar").read_bytes() == payload


def test_next_run_resumes_with_the_validator_of_the_killed_run(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    server.inject("/radar/20200214.tar", Fault("truncate", at=250_000))
    fast_settings.retries = 0
    with pytest.raises(FetchError, match="incomplete|broke off"):
        fetch(src, tmp_path, fast_settings)  # "the job was killed" after the first attempt
    assert not (tmp_path / "20200214.tar").exists()
    result = fetch(src, tmp_path, fast_settings)  # a new run, new transport object
    assert result.path.read_bytes() == payload
    first, second = server.requests()
    assert (second.range, second.status, second.sent) == ("bytes=250000-", 206, SIZE - 250_000)
    assert second.if_range is not None and second.if_range.startswith('"')
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith("fetch-lock")) == ["20200214.tar"]


def test_partial_of_another_version_is_not_spliced(server, payload, tmp_path, fast_settings):
    src = _source(server, payload)
    (tmp_path / "20200214.tar.part").write_bytes(b"old version bytes")
    (tmp_path / ".20200214.tar.part.validator").write_text('"an-old-etag"')
    result = fetch(src, tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    (request,) = server.requests()
    assert (request.range, request.if_range, request.status) == ("bytes=17-", '"an-old-etag"', 200)


def test_a_download_process_imports_no_heavy_library(server, payload, tmp_path):
    """A fetch step's process pays for its imports as curl pays for its start-up: a direct
    download must not load httpx (proxies only), the science stack, or Dagster."""
    import subprocess
    import sys

    src = _source(server, payload)
    code = ("import sys; from pathlib import Path; from hpc_workflows.fetch import FetchSettings, Source, fetch; "
            f"r = fetch(Source(key='k', url={src.url!r}, checksum={src.checksum!r}), Path({str(tmp_path)!r}), "
            "FetchSettings(retries=0)); assert r.verified; "
            "print([m for m in ('httpx', 'httpcore', 'xarray', 'dask', 'numpy', 'netCDF4', 'dagster', 'pydantic') "
            "if m in sys.modules])")
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]"


def test_space_and_non_ascii_in_the_url_are_percent_encoded(server, payload, tmp_path, fast_settings):
    server.add("/radar/a%20b%C3%A9.tar", payload)
    url = f"http://127.0.0.1:{server.port}/radar/a bé.tar?day=2020 02 14"
    result = fetch(Source(key="k", url=url, checksum=f"sha256:{sha256_hex(payload)}"), tmp_path, fast_settings)
    assert result.path.read_bytes() == payload
    assert [r.path for r in server.requests()] == ["/radar/a%20b%C3%A9.tar"]
