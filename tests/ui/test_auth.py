"""TokenAuth on its own (fast): what passes, what is refused, how the browser's cookie is set.

The protected app here is a two-line ASGI app; the real Dagster app behind the same
middleware is tested in test_owner_only.py.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from hpc_workflows.ui.auth import TokenAuth, cookie_name, new_token

TOKEN = new_token()


async def hello(scope, receive, send):
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


class client:
    """A synchronous face on httpx's (async-only) ASGI transport, for short tests."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _do(self, method: str, url: str, **kw) -> httpx.Response:
        async def go():
            transport = httpx.ASGITransport(app=TokenAuth(hello, TOKEN))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                resp = await c.request(method, url, **kw)
                await resp.aread()
                return resp

        return asyncio.run(go())

    def get(self, url: str, **kw) -> httpx.Response:
        return self._do("GET", url, **kw)

    def post(self, url: str, **kw) -> httpx.Response:
        return self._do("POST", url, **kw)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Cookie": f"{cookie_name(TOKEN)}=wrong"},
                                     {"Cookie": f"hpcw_ui_other={TOKEN}"}])
def test_requests_without_the_token_are_refused(headers):
    with client() as c:
        resp = c.get("/graphql", headers=headers)
        assert resp.status_code == 403 and "answers only its owner" in resp.text
        assert c.post("/graphql?token=wrong", json={}).status_code == 403


@pytest.mark.parametrize("scheme", ["token", "Bearer"])
def test_the_header_passes(scheme):
    with client() as c:
        assert c.get("/x", headers={"Authorization": f"{scheme} {TOKEN}"}).text == "hello"


def test_first_visit_sets_a_strict_httponly_cookie_and_strips_the_token():
    with client() as c:
        first = c.get(f"/runs/abc?a=1&token={TOKEN}&b=2")
        assert first.status_code == 302 and first.headers["location"] == "/runs/abc?a=1&b=2"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{cookie_name(TOKEN)}={TOKEN};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age" not in cookie
        # Other localhost apps' cookies of any shape do not hide ours.
        again = c.get("/runs/abc", headers={"Cookie": f'weird="{{json}}"; x; {cookie_name(TOKEN)}={TOKEN}'})
        assert again.text == "hello"
    with client() as c:  # no open redirect: the token holder stays on this site
        assert c.get(f"http://localhost//evil.example/x?token={TOKEN}").headers["location"] == "/evil.example/x"
    with client() as c:  # a POST with ?token= is served as is (no redirect)
        assert c.post(f"/graphql?token={TOKEN}", json={}).text == "hello"


def _websocket(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> list[dict]:
    sent: list[dict] = []

    async def go():
        async def receive():
            return {"type": "websocket.connect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "websocket", "path": "/graphql", "root_path": "", "query_string": query,
                 "headers": headers}
        await TokenAuth(hello, TOKEN)(scope, receive, send)

    asyncio.run(go())
    return sent


def test_websocket_needs_the_token_too():
    assert _websocket([]) == [{"type": "websocket.close", "code": 1008}]
    assert _websocket([(b"cookie", f"{cookie_name(TOKEN)}={TOKEN}".encode())]) == [{"type": "websocket.accept"}]
    assert _websocket([], f"token={TOKEN}".encode()) == [{"type": "websocket.accept"}]


def test_cookie_names_differ_per_session_and_hide_the_token():
    other = new_token()
    assert cookie_name(TOKEN) != cookie_name(other) and TOKEN not in cookie_name(TOKEN)
    with pytest.raises(ValueError, match="16 characters"):
        TokenAuth(hello, "short")
