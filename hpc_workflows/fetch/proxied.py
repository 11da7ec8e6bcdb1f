"""GET requests through a proxy from the environment, with httpx (imported only here).

`http` sends a URL here only when ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` applies to it
(``NO_PROXY`` honoured): direct requests use `wire`, which starts faster.  Responses and
errors look like `wire`'s, so `http` handles both alike.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator, Mapping

import httpx

from hpc_workflows.fetch.wire import (
    USER_AGENT,
    BrokenTransfer,
    ConnectError,
    ConnectTimeout,
    InvalidURL,
    ReadTimeout,
    ssl_context,
)

_CLIENT_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
               "all_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")
_clients: dict[tuple, httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(connect_timeout: float | None, read_timeout: float | None, verify: bool) -> httpx.Client:
    """One shared client per settings and environment in this process (thread-safe)."""
    # The pid keeps a forked child from sharing its parent's pooled sockets; the environment
    # decides proxies and extra CA bundles, which are read when the client is built.
    key = (os.getpid(), tuple(os.environ.get(name) for name in _CLIENT_ENV), connect_timeout, read_timeout, verify)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=None)
            client = _clients[key] = httpx.Client(
                timeout=timeout, verify=ssl_context(verify), follow_redirects=True, trust_env=True,
                headers={"User-Agent": USER_AGENT},
            )
        return client


def _cause(exc: BaseException) -> BaseException:
    """The innermost cause (the OS or TLS error httpx and httpcore wrapped twice)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


@contextmanager
def _as_wire_errors() -> Iterator[None]:
    """Raise httpx's errors as the `wire` errors `http` sorts into retryable or permanent."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise ConnectTimeout(str(exc)) from _cause(exc)
    except httpx.ConnectError as exc:
        raise ConnectError(str(exc)) from _cause(exc)
    except httpx.ReadTimeout as exc:
        raise ReadTimeout(str(exc)) from _cause(exc)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise InvalidURL(str(exc)) from None
    except httpx.HTTPError as exc:
        raise BrokenTransfer(str(exc)) from _cause(exc)


class ProxiedResponse:
    """A streamed httpx response with `wire.Response`'s face (``readinto`` is None: chunks)."""

    readinto = None

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.reason = response.reason_phrase
        self.headers = response.headers

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives (bytes objects)."""
        with _as_wire_errors():
            yield from self._response.iter_raw()

    def read(self) -> bytes:
        """The whole (small) body."""
        with _as_wire_errors():
            return self._response.read()

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> "ProxiedResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(url: str, headers: Mapping[str, str], *, connect_timeout: float | None, read_timeout: float | None,
        verify: bool = True) -> ProxiedResponse:
    """As `wire.get`, through the proxy the environment names for ``url``."""
    client = _client(connect_timeout, read_timeout, verify)
    with _as_wire_errors():
        request = client.build_request("GET", url, headers=dict(headers))
        return ProxiedResponse(client.send(request, stream=True))

