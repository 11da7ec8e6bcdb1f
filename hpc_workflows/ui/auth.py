"""A secret token in front of every HTTP request and websocket of an ASGI app.

Like Jupyter's token: the browser brings it once as ``?token=...``, gets it back as an
HttpOnly, SameSite=Strict cookie and is redirected to the same page without it (so it does
not stay in the address bar or the history); scripts send ``Authorization: token ...``.
Anything else gets a 403 with one line of text. Plain ASGI, so it knows nothing of Dagster
and covers the GraphQL websocket (subscriptions) as well as HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["TokenAuth", "new_token", "cookie_name"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REFUSAL = (b"403 Forbidden: this hpc_workflows web UI answers only its owner. Open the URL "
           b"(with its token) from the private file named in the UI's job log.\n")


def new_token() -> str:
    """A fresh per-session secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def cookie_name(token: str) -> str:
    """The cookie that carries ``token``.

    Cookies are not kept apart by port, so two UIs tunnelled to ``localhost:8080`` and
    ``localhost:8081`` would overwrite one fixed name; a name derived from the token keeps
    them apart without revealing it.
    """
    return "hpcw_ui_" + hashlib.sha256(token.encode()).hexdigest()[:12]


class TokenAuth:
    """ASGI middleware: pass requests that carry ``token``, refuse the rest with 403.

    Parameters
    ----------
    app
        The protected ASGI application.
    token
        The secret; compared in constant time.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the UI token must be at least 16 characters: use new_token()")
        self.app = app
        self._token = token.encode()
        self._cookie = cookie_name(token)

    def _matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan: not a request
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = next((v for k, v in query if k == "token"), None)
        if not any(self._matches(c) for c in (_from_header(headers), _from_cookie(headers, self._cookie),
                                               from_query)):
            await _refuse(scope, send)
            return
        if (self._matches(from_query) and scope["type"] == "http"
                and scope.get("method") in ("GET", "HEAD")):
            await self._redirect_with_cookie(scope, query, send)
            return
        await self.app(scope, receive, send)

    async def _redirect_with_cookie(self, scope: Scope, query: list[tuple[str, str]], send: Send) -> None:
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        path = scope.get("root_path", "") + scope.get("path", "/")
        # "//host/x" in Location would send the browser to another site: keep it on this one.
        location = "/" + path.lstrip("/") + (f"?{rest}" if rest else "")
        # Session cookie (no Max-Age): it dies with the browser, the token with the UI.
        cookie = f"{self._cookie}={self._token.decode()}; Path=/; HttpOnly; SameSite=Strict"
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", location.encode("latin-1")),
                                (b"set-cookie", cookie.encode("latin-1")),
                                (b"cache-control", b"no-store"),
                                (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


def _from_header(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("token", "bearer") and value.strip() else None


def _from_cookie(headers: dict[str, str], name: str) -> str | None:
    # Split by hand: http.cookies gives up on the whole header at the first cookie it
    # dislikes, and other apps on localhost set cookies of every shape.
    for part in headers.get("cookie", "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting makes the server answer the handshake with HTTP 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(REFUSAL)).encode())]})
    await send({"type": "http.response.body", "body": REFUSAL})
