"""Retry timing, checksum parsing/sidecars and the run summary."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from hpc_workflows.fetch import FetchError, FetchResult, FetchSettings, Source, sha256_file, summarise
from hpc_workflows.fetch.retry import backoff_delay, parse_retry_after, retry_delay
from hpc_workflows.fetch.verify import parse_checksum, parse_sidecar


def test_backoff_grows_exponentially_with_bounded_jitter():
    settings = FetchSettings(backoff_initial=1.0, backoff_factor=2.0, backoff_max=10.0, jitter=0.5)
    rng = random.Random(1)
    delays = [backoff_delay(n, settings, rng) for n in range(1, 7)]
    for n, d in enumerate(delays, start=1):
        base = min(10.0, 2.0 ** (n - 1))
        assert base <= d <= base * 1.5
    assert len({round(backoff_delay(1, settings, rng), 6) for _ in range(20)}) > 1  # jitter varies


def test_retry_after_forms():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    settings = FetchSettings(retry_after_max=5)
    assert retry_delay(1, 100.0, settings) == 5


def test_checksum_parsing_and_sidecars(tmp_path: Path):
    assert parse_checksum("SHA256:" + "AB" * 32) == ("sha256", "ab" * 32)
    digest = "cd" * 16
    assert parse_sidecar(f"{digest}\n", "md5", "x.tar") == f"md5:{digest}"
    text = f"{'ab' * 16}  other.tar\n{digest} *x.tar\n"
    assert parse_sidecar(text, "md5", "x.tar") == f"md5:{digest}"
    with pytest.raises(ValueError, match="no line"):
        parse_sidecar(text, "md5", "y.tar")
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_summary_counts_done_skipped_failed():
    src = Source(key="k", url="https://h/a")
    done = FetchResult(src, Path("a"), bytes=4_000_000, seconds=2.0, sha256="x", attempts=2, skipped=False)
    skip = FetchResult(src, Path("a"), bytes=9, seconds=0.1, sha256="x", attempts=0, skipped=True)
    fail = FetchError(src, "HTTP 404", field="url", attempts=1)
    summary = summarise([done, skip, fail])
    assert (summary.done, summary.skipped, summary.failed, summary.bytes) == (1, 1, 1, 4_000_000)
    assert summary.mb_per_s == pytest.approx(2.0)
    assert "HTTP 404" in summary.as_metadata()["failures"]
    assert "1 fetched, 1 already complete, 1 failed" in str(summary)


def test_fetch_error_survives_pickling_between_processes():
    import pickle

    src = Source(key="k", url="https://h/a")
    err = pickle.loads(pickle.dumps(FetchError(src, "HTTP 404 Not Found", field="url", attempts=1)))
    assert (err.source, err.reason, err.field, err.attempts) == (src, "HTTP 404 Not Found", "url", 1)
    assert str(err) == str(FetchError(src, "HTTP 404 Not Found", field="url", attempts=1))


def test_secrets_in_urls_are_redacted():
    from hpc_workflows.fetch.errors import redact_url

    assert redact_url("https://u:pw@h:8443/a?date=1&X-Amz-Signature=abc&token=t") == \
        "https://***@h:8443/a?date=1&X-Amz-Signature=***&token=***"
    assert redact_url("moose:/adhoc/it's; a file") == "moose:/adhoc/it's; a file"
