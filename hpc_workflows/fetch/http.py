"""HTTP(S) transport: streamed to disk, resumable with ``Range``, timeouts, per-host cap.

Direct requests go through `wire` (the standard library's ``http.client``: fast to import,
no copy of the received bytes); requests the environment sends through a proxy go through
httpx (`proxied`, imported only then).  Status codes and network errors are sorted here into
retryable (5xx, 408/429, drops, stalls, refused connections) and permanent (404 and other
4xx, untrusted certificates, bad URLs).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Union
from urllib.parse import urlsplit

from hpc_workflows.diskspace import check_space
from hpc_workflows.fetch import wire
from hpc_workflows.fetch.base import Transfer
from hpc_workflows.fetch.errors import TransferFailed, redact_url
from hpc_workflows.fetch.hostlimit import host_slot
from hpc_workflows.fetch.partfile import PartWriter
from hpc_workflows.fetch.retry import parse_retry_after

if TYPE_CHECKING:  # pragma: no cover
    from hpc_workflows.fetch.proxied import ProxiedResponse
    from hpc_workflows.fetch.settings import FetchSettings
    from hpc_workflows.fetch.source import Source

    AnyResponse = Union[wire.Response, ProxiedResponse]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$")
# 408 Request Timeout, 425 Too Early, 429 Too Many Requests and server errors may pass.
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
_UNKNOWN_HOST = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}
_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _host_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def uses_proxy(url: str) -> bool:
    """True when the environment sends ``url`` through a proxy (``NO_PROXY`` honoured)."""
    # Looked at before importing anything: most processes have no proxy set at all.
    if not any(os.environ.get(name) for name in _PROXY_ENV):
        return False
    from urllib.request import getproxies_environment, proxy_bypass_environment

    proxies = getproxies_environment()
    parts = urlsplit(url)
    if not (proxies.get(parts.scheme.lower()) or proxies.get("all")):
        return False
    return not proxy_bypass_environment(parts.netloc.rsplit("@", 1)[-1], proxies)


def _get(url: str, headers: dict[str, str], settings: "FetchSettings") -> "AnyResponse":
    """Send the GET directly, or through httpx when a proxy applies; `wire.WireError` on failure."""
    if uses_proxy(url):
        from hpc_workflows.fetch import proxied

        send = proxied.get
    else:
        send = wire.get
    return send(url, headers, connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
                verify=settings.verify_tls)


def _status_failure(response: "AnyResponse", url: str) -> TransferFailed:
    status = response.status
    reason = f"HTTP {status} {response.reason} from {redact_url(url)}"
    if status in _RETRYABLE_STATUS or status >= 500:
        return TransferFailed(reason, retryable=True, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    hint = {
        404: "; check the url (wrong date or path?)",
        410: "; the file was removed from the server",
        401: "; the server needs credentials",
        403: "; access denied: check credentials or permissions",
    }.get(status, "")
    return TransferFailed(reason + hint, retryable=False, field="url")


def _network_failure(exc: wire.WireError, url: str, settings: "FetchSettings") -> TransferFailed:
    where = redact_url(url)
    if isinstance(exc, wire.ConnectTimeout):
        return TransferFailed(f"connect to {where} timed out after {settings.connect_timeout}s", retryable=True, field="url")
    if isinstance(exc, wire.ConnectError) and isinstance(exc.__cause__, ssl.SSLCertVerificationError):
        return TransferFailed(
            f"TLS certificate of {where} not trusted ({exc.__cause__.verify_message}); add the site's CA "
            "bundle via SSL_CERT_FILE (verify_tls=False only for testing)",
            retryable=False,
            field="url",
        )
    if isinstance(exc, wire.ConnectError) and isinstance(exc.__cause__, socket.gaierror) \
            and exc.__cause__.errno in _UNKNOWN_HOST:
        # "Name or service not known" is an answer, not an outage (that is EAI_AGAIN): retrying
        # for minutes only delays the message.
        return TransferFailed(
            f"host {urlsplit(url).hostname!r} of {where} is not known to DNS ({exc.__cause__.strerror}); "
            "check the host in the url", retryable=False, field="url")
    if isinstance(exc, wire.ConnectError):
        return TransferFailed(f"cannot connect to {where}: {exc}; check the host and port in the url", retryable=True, field="url")
    if isinstance(exc, wire.ReadTimeout):
        return TransferFailed(f"no data from {where} for read_timeout={settings.read_timeout}s (stalled)", retryable=True)
    if isinstance(exc, wire.InvalidURL):
        return TransferFailed(f"invalid url {where}: {exc}", retryable=False, field="url")
    # Dropped connections, truncated bodies, protocol errors: the next attempt resumes.
    return TransferFailed(f"transfer from {where} broke off: {exc}", retryable=True)


class HttpTransport:
    """Stream an HTTP(S) URL into a ``.part`` file, resuming with ``Range`` when possible."""

    name = "http"
    supports_resume = True

    def __init__(self) -> None:
        # ETag/Last-Modified of the response the .part came from, sent as If-Range so a resume
        # never splices two versions of a file together.  Also kept next to the .part so a
        # later run (after a crash or walltime kill) resumes just as safely.
        self._validator: str | None = None

    @staticmethod
    def _validator_file(part: Path) -> Path:
        return part.with_name(f".{part.name}.validator")

    def _saved_validator(self, part: Path) -> str | None:
        if self._validator is None:
            try:
                self._validator = self._validator_file(part).read_text(encoding="utf-8").strip() or None
            except OSError:
                pass
        return self._validator

    def _remember_validator(self, part: Path, response: "AnyResponse") -> None:
        etag = response.headers.get("ETag")
        self._validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
        path = self._validator_file(part)
        if self._validator:
            path.write_text(self._validator, encoding="utf-8")
        else:
            path.unlink(missing_ok=True)

    def retrieve(
        self, source: "Source", part: Path, offset: int, algorithms: frozenset[str], settings: "FetchSettings"
    ) -> Transfer:
        url = source.url
        headers = dict(settings.headers)
        # Ask for the bytes as stored: a transparent gzip would break sizes and resume.
        headers["Accept-Encoding"] = "identity"
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            validator = self._saved_validator(part)
            if validator:
                headers["If-Range"] = validator
        try:
            with host_slot(_host_key(url), settings.max_connections_per_host, settings.resolved_host_lock_dir):
                with _get(url, headers, settings) as response:
                    return self._receive(response, part, offset, algorithms, settings, url)
        except wire.WireError as exc:
            raise _network_failure(exc, url, settings) from None

    def _receive(
        self, response: "AnyResponse", part: Path, offset: int, algorithms: frozenset[str],
        settings: "FetchSettings", url: str,
    ) -> Transfer:
        status = response.status
        if status == 416 and offset > 0:
            match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:
                # The .part already holds the whole file (a run died before the rename).
                self._validator_file(part).unlink(missing_ok=True)
                return Transfer(total_size=offset, resumed_from=offset)
            part.unlink(missing_ok=True)
            raise TransferFailed("server refused to resume (HTTP 416); starting again", retryable=True)
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise TransferFailed(
                    f"server answered a resume with an unexpected Content-Range "
                    f"{response.headers.get('Content-Range')!r}; starting again",
                    retryable=True,
                )
            total = None if match.group(3) == "*" else int(match.group(3))
            start = offset
        elif status == 200:
            start = 0  # Range ignored or If-Range mismatch: the whole file comes again.
            self._remember_validator(part, response)
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise _status_failure(response, url)
        if total is not None:
            # Before writing: a download that cannot fit fails now, naming the filesystem.
            check_space(part.parent, total - start, str(part))
        with PartWriter(part, start, algorithms, early_writeback=settings.fsync) as writer:
            if response.readinto is not None:  # direct (`wire`): reused buffers, no copy
                writer.fill_from(response.readinto)
            else:  # through a proxy (httpx)
                for chunk in response.chunks():
                    writer.write(chunk)
            digests = writer.digests()
            size = writer.size
        if total is not None and size != total:
            raise TransferFailed(f"incomplete transfer: got {size} of {total} bytes", retryable=True)
        # Complete: fetch verifies, then renames or deletes the .part; nothing left to resume.
        self._validator_file(part).unlink(missing_ok=True)
        return Transfer(total_size=total, resumed_from=start, digests=digests)

    def read_text(self, url: str, settings: "FetchSettings") -> str:
        try:
            with host_slot(_host_key(url), settings.max_connections_per_host, settings.resolved_host_lock_dir):
                with _get(url, dict(settings.headers), settings) as response:
                    if response.status != 200:
                        failure = _status_failure(response, url)
                        if not failure.retryable:
                            failure.field = "checksum_sidecar"
                        raise failure
                    body = response.read()
                    charset = response.headers.get("Content-Type", "").partition("charset=")[2].split(";")[0]
        except wire.WireError as exc:
            raise _network_failure(exc, url, settings) from None
        try:
            return body.decode(charset.strip(' "') or "utf-8", errors="replace")
        except LookupError:  # an unknown charset name: sidecars are ASCII anyway
            return body.decode("utf-8", errors="replace")
