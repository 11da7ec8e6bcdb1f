"""Direct HTTP/1.1 GET requests on the standard library's ``http.client`` (no httpx).

Why not httpx here: a download runs in its own process (a pipeline step), which pays for its
imports as curl pays for its start-up.  httpx pulls in httpcore, h11 and (for its command
line) click and rich: about 0.2 s, a sixth of the time curl needs for 512 MB on loopback
(benchmarks/fetch_bench.py).  ``http.client`` costs a few milliseconds, and hands out what
the socket returned with no extra copy (httpcore + h11 copy every byte three more times in
Python, about 0.6 CPU-s/GB).  Requests through a proxy go through httpx instead (`proxied`),
imported only then.

What this module does itself: redirects (at most 20, as httpx; credentials are not sent to
another origin), ``user:password@`` in the URL as Basic auth, connect and read timeouts,
TLS verification against the system CAs plus certifi's bundle, and errors sorted into the
`WireError` kinds `http` turns into retryable or permanent failures.  One connection per
request: files are large, so connection reuse would save nothing.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from base64 import b64encode
from contextlib import contextmanager
from typing import Iterator, Mapping
from urllib.parse import quote, unquote, urljoin, urlsplit

_READ_BYTES = 1 << 20
_MAX_REDIRECTS = 20
_REDIRECTS = {301, 302, 303, 307, 308}
# Characters left as they are in a request path: RFC 3986 reserved and unreserved ones, and
# "%" so an already-encoded path is not encoded twice.
_PATH_SAFE = "/:@!$&'()*+,;=%~"
USER_AGENT = "hpc-workflows"


class WireError(Exception):
    """A request failed below HTTP (no usable status); ``__cause__`` holds the OS/TLS error."""


class ConnectTimeout(WireError):
    """No connection within the connect timeout."""


class ConnectError(WireError):
    """Connection refused, host unknown, network unreachable, TLS certificate rejected..."""


class ReadTimeout(WireError):
    """No byte for the read timeout (a stalled server)."""


class InvalidURL(WireError):
    """The URL cannot be requested (scheme, host or port); retrying cannot help."""


class BrokenTransfer(WireError):
    """The connection dropped or the server broke the protocol (a retry may resume)."""


_contexts: dict[tuple, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def ssl_context(verify: bool) -> ssl.SSLContext:
    """System CAs (and ``SSL_CERT_FILE``/``SSL_CERT_DIR``) plus certifi's bundle, as httpx
    trusts; or no verification when asked.  Built once per setting and environment: loading
    the CA bundles takes tens of milliseconds, a context is safe to share between threads."""
    key = (verify, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _contexts[key] = _new_ssl_context(verify)
        return ctx


def _new_ssl_context(verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        import certifi

        ctx.load_verify_locations(certifi.where())
    except (ImportError, OSError):  # pragma: no cover - certifi is installed with httpx
        pass
    return ctx


@contextmanager
def _read_errors() -> Iterator[None]:
    """Raise socket and http.client errors met while reading a response as `WireError`s."""
    try:
        yield
    except (socket.timeout, TimeoutError) as exc:
        raise ReadTimeout(f"read timed out: {exc}") from exc
    except http.client.IncompleteRead as exc:
        raise BrokenTransfer(f"incomplete body: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise BrokenTransfer(f"connection broke: {exc!r}") from exc


class Response:
    """One response with its body still on the socket.

    Attributes
    ----------
    status : int
    reason : str
    headers : http.client.HTTPMessage
        ``headers.get(name)`` is case-insensitive.
    """

    def __init__(self, raw: http.client.HTTPResponse, conn: http.client.HTTPConnection) -> None:
        self._raw = raw
        self._conn = conn
        self.status = raw.status
        self.reason = raw.reason
        self.headers = raw.msg

    def _check_complete(self) -> None:
        # http.client reads an early close as the end of the body instead of raising.
        if self._raw.length:
            raise BrokenTransfer(
                f"peer closed connection without sending complete message body ({self._raw.length} bytes missing)"
            )

    def readinto(self, buffer: memoryview) -> int:
        """Fill (part of) ``buffer`` with what one socket read returns; 0 at the end of the body.

        Into the caller's buffer, with no intermediate copy.  A stalled or dropped connection
        raises `ReadTimeout`/`BrokenTransfer` after keeping what arrived, so a retry resumes
        after it.
        """
        raw = self._raw
        with _read_errors():
            if raw.chunked or raw.fp is None:
                data = raw.read1(len(buffer))
                count = len(data)
                buffer[:count] = data
            else:
                want = len(buffer) if raw.length is None else min(len(buffer), raw.length)
                count = raw.fp.readinto1(buffer[:want]) if want else 0
                if raw.length is not None:
                    raw.length -= count
        if not count:
            self._check_complete()
        return count

    def read(self) -> bytes:
        """The whole (small) body, e.g. a checksum sidecar."""
        with _read_errors():
            data = self._raw.read()
        self._check_complete()
        return data

    def close(self) -> None:
        self._raw.close()
        self._conn.close()

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _target(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path?query)`` of ``url``, or `InvalidURL`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidURL(f"unsupported scheme {scheme!r}")
    if not parts.hostname:
        raise InvalidURL("no host")
    # Percent-encode what may not appear raw in a request line (spaces, non-ASCII), as httpx
    # and curl do; http.client would refuse the URL instead.
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), target


def _basic_auth(url: str) -> str | None:
    """An ``Authorization`` value from the URL's ``user:password@``, as browsers and httpx do."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + b64encode(pair.encode("utf-8")).decode("ascii")


def _send(url: str, headers: Mapping[str, str], connect_timeout: float | None, read_timeout: float | None,
          verify: bool) -> Response:
    scheme, host, port, target = _target(url)
    if scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=connect_timeout, context=ssl_context(verify))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
    try:
        try:
            conn.connect()
        except (socket.timeout, TimeoutError) as exc:
            raise ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS verification
            raise ConnectError(str(exc)) from exc
        conn.sock.settimeout(read_timeout)
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            raw = conn.getresponse()
        except http.client.InvalidURL as exc:
            raise InvalidURL(str(exc)) from None
        except (socket.timeout, TimeoutError) as exc:
            raise ReadTimeout(str(exc) or "read timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise BrokenTransfer(f"server closed or broke the connection: {exc!r}") from exc
    except BaseException:
        conn.close()
        raise
    return Response(raw, conn)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.hostname, parts.port


def get(url: str, headers: Mapping[str, str], *, connect_timeout: float | None, read_timeout: float | None,
        verify: bool = True) -> Response:
    """Send a GET for ``url`` and return the response after following redirects.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` URL (``user:password@`` becomes Basic auth).
    headers : mapping
        Extra request headers (they replace the defaults of the same name).
    connect_timeout, read_timeout : float or None
        Seconds for connecting (TLS handshake included) and for each read.
    verify : bool
        Verify TLS certificates and host names.

    Returns
    -------
    Response
        Close it (or use it as a context manager) when done.

    Raises
    ------
    WireError
        `InvalidURL`, `ConnectTimeout`, `ConnectError`, `ReadTimeout` or `BrokenTransfer`.
    """
    sent = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
    lower = {name.lower() for name in headers}
    sent = {name: value for name, value in sent.items() if name.lower() not in lower}
    sent.update(headers)
    auth = _basic_auth(url) if "authorization" not in lower else None
    if auth:
        sent["Authorization"] = auth
    origin = _origin(url)
    for _ in range(_MAX_REDIRECTS + 1):
        response = _send(url, sent, connect_timeout, read_timeout, verify)
        location = response.headers.get("Location")
        if response.status not in _REDIRECTS or not location:
            return response
        response.close()
        url = urljoin(url, location)
        if _origin(url) != origin:
            # Never hand credentials to another host (a mirror, a CDN).
            sent = {name: value for name, value in sent.items() if name.lower() not in ("authorization", "cookie")}
            origin = _origin(url)
    raise BrokenTransfer(f"more than {_MAX_REDIRECTS} redirects")
