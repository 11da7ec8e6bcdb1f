"""An httpx transport on the standard library's ``http.client`` for direct connections.

httpx's default stack (httpcore + h11) copies every received byte three more times in Python
(buffer append, slice, bytes); for multi-GB files that costs about 0.6 CPU-s/GB, half again
curl's total (see benchmarks/fetch_bench.py).  ``http.client`` hands out what the socket
returned with no extra copy.  httpx keeps doing everything else: request building,
redirects, headers, errors, and proxies (proxied URLs are mounted on httpx's own transport).
One connection per request: files are large, so connection reuse would save nothing.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from contextlib import contextmanager
from typing import Iterator

import httpx

_READ_BYTES = 1 << 20
#: Response extension holding the body's ``readinto(buffer) -> int`` (direct connections only).
READINTO = "hpc_workflows.readinto"


def ssl_context(verify: bool) -> ssl.SSLContext:
    """System CAs plus certifi's bundle (what httpx trusts), or no verification when asked."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context()
    try:
        import certifi

        ctx.load_verify_locations(certifi.where())
    except (ImportError, OSError):  # pragma: no cover - certifi ships with httpx
        pass
    return ctx


class _Body(httpx.SyncByteStream):
    """The response body, read straight from the socket; raises httpx errors like httpcore."""

    def __init__(self, response: http.client.HTTPResponse, conn: http.client.HTTPConnection,
                 request: httpx.Request) -> None:
        self._response = response
        self._conn = conn
        self._request = request

    @contextmanager
    def _httpx_errors(self) -> Iterator[None]:
        """Raise socket and http.client errors as the httpx errors httpcore would raise."""
        request = self._request
        try:
            yield
        except (socket.timeout, TimeoutError) as exc:
            raise httpx.ReadTimeout(f"read timed out: {exc}", request=request) from exc
        except http.client.IncompleteRead as exc:
            raise httpx.RemoteProtocolError(f"incomplete body: {exc}", request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(f"connection broke: {exc}", request=request) from exc

    def _check_complete(self) -> None:
        # http.client reads an early close as the end of the body instead of raising.
        if self._response.length:
            raise httpx.RemoteProtocolError(
                f"peer closed connection without sending complete message body "
                f"({self._response.length} bytes missing)",
                request=self._request,
            )

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        while True:
            with self._httpx_errors():
                chunk = response.read1(_READ_BYTES)
            if not chunk:
                break
            yield chunk
        self._check_complete()

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` from the socket (no intermediate copy); 0 at the end of the body."""
        response = self._response
        with self._httpx_errors():
            if response.chunked or response.fp is None:
                data = response.read1(len(buffer))
                count = len(data)
                buffer[:count] = data
            else:
                # As HTTPResponse.read1, but into our buffer: what one socket read returns (a
                # stalled or dropped connection keeps what arrived, so a retry resumes after it).
                want = len(buffer) if response.length is None else min(len(buffer), response.length)
                count = response.fp.readinto1(buffer[:want]) if want else 0
                if response.length is not None:
                    response.length -= count
        if not count:
            self._check_complete()
        return count

    def close(self) -> None:
        self._response.close()
        self._conn.close()


class StdlibTransport(httpx.BaseTransport):
    """Send one HTTP/1.1 request per connection with ``http.client``."""

    def __init__(self, verify: bool = True) -> None:
        self._ssl = ssl_context(verify)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        timeouts = request.extensions.get("timeout", {})
        port = url.port or (443 if url.scheme == "https" else 80)
        if url.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                url.host, port, timeout=timeouts.get("connect"), context=self._ssl
            )
        elif url.scheme == "http":
            conn = http.client.HTTPConnection(url.host, port, timeout=timeouts.get("connect"))
        else:
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        try:
            try:
                conn.connect()
            except (socket.timeout, TimeoutError) as exc:
                raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
            except OSError as exc:  # refused, unreachable, DNS, TLS verification
                raise httpx.ConnectError(str(exc), request=request) from exc
            conn.sock.settimeout(timeouts.get("read"))
            try:
                conn.putrequest(request.method, url.raw_path.decode("ascii"), skip_host=True,
                                skip_accept_encoding=True)
                for name, value in request.headers.raw:
                    conn.putheader(name.decode("latin-1"), value)
                body = request.read()
                conn.endheaders(body or None)
                response = conn.getresponse()
            except (socket.timeout, TimeoutError) as exc:
                raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise httpx.RemoteProtocolError(f"server closed or broke the connection: {exc!r}",
                                                request=request) from exc
        except BaseException:
            conn.close()
            raise
        body = _Body(response, conn, request)
        return httpx.Response(
            status_code=response.status,
            headers=response.getheaders(),
            stream=body,
            # READINTO: callers that can fill their own buffers skip the bytes object per read.
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode("latin-1"),
                        READINTO: body.readinto},
        )


def proxy_mounts(verify: bool) -> dict[str, httpx.BaseTransport | None]:
    """httpx mounts sending proxied URLs (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY) through httpx's
    own proxy-capable transport; URLs no proxy applies to fall through to ours."""
    try:
        from httpx._utils import get_environment_proxies
    except ImportError:  # pragma: no cover - if httpx moves it, proxies come from the env below
        import urllib.request

        env = {f"{k}://": v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
    else:
        env = get_environment_proxies()
    return {
        pattern: None if proxy is None else httpx.HTTPTransport(proxy=proxy, verify=verify)
        for pattern, proxy in env.items()
    }
