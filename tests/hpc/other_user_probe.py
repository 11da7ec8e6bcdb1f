"""Run as the second unix user: try every way into a Dask cluster someone else started.

Usage: ``python other_user_probe.py SCHEDULER_ADDRESS [PORT ...]``. Prints one JSON object:
``{"<attempt>": "uid=<n>" | "answered" | "refused: <reason>"}``. Any value that is not
"refused" is a way in. Needs only dask/distributed (the second user's own venv).
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from distributed import Client
from distributed.core import rpc
from distributed.security import Security

TIMEOUT = "4s"


def _refused(exc: BaseException) -> str:
    return f"refused: {type(exc).__name__}: {str(exc)[:120]}"


def _client_getuid(address: str, security: Security | None) -> str:
    try:
        with Client(address, security=security, timeout=TIMEOUT, set_as_default=False) as c:
            uids = c.run(os.getuid)
            return f"uid={sorted(set(uids.values()))}"
    except BaseException as exc:  # noqa: BLE001 - any failure is a refusal
        return _refused(exc)


async def _rpc_getuid(address: str, security: Security | None) -> str:
    """Ask a server directly (a worker runs ``run``; every server answers ``identity``)."""
    kwargs = security.get_connection_args("client") if security else {}
    try:
        async with rpc(address, connection_args=kwargs, timeout=4) as server:
            try:
                result = await asyncio.wait_for(
                    server.run(function=pickle.dumps(os.getuid)), 8)
                return f"uid={result.get('result')}"
            except Exception:  # noqa: BLE001 - not a worker: does it answer at all?
                await asyncio.wait_for(server.identity(), 8)
                return "answered"
    except BaseException as exc:  # noqa: BLE001
        return _refused(exc)


#: What distributed's HTTP servers serve by default: dashboard, info pages (worker logs, call
#: stacks), JSON API, Prometheus metrics, health.
HTTP_PATHS = ("/status", "/info/main/workers.html", "/json/identity.json", "/metrics", "/health",
              "/sitemap.json")


def _http(port: int) -> str:
    answered = []
    for path in HTTP_PATHS:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=4) as resp:
                body = resp.read()
                # distributed always serves the list of its routes: a way in only if it has any
                if path != "/sitemap.json" or set(json.loads(body)["paths"]) - {path}:
                    answered.append(f"{path} {resp.status} {body[:80]!r}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                answered.append(f"{path} {exc.code}")
        except BaseException as exc:  # noqa: BLE001 - not HTTP at all
            return _refused(exc)
    return f"answered HTTP {answered}" if answered else "refused: HTTP 404 on every route"


def _own_credentials() -> Security:
    """A self-signed certificate of the other user's own making (openssl: its venv may lack
    the ``cryptography`` package that ``Security.temporary`` needs)."""
    folder = tempfile.mkdtemp()
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=dask", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return Security(tls_ca_file=cert, tls_client_cert=cert, tls_client_key=key,
                    require_encryption=True)


def main() -> None:
    scheduler, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    host_port = scheduler.split("://", 1)[-1]
    own = _own_credentials()
    results = {
        "client tcp": _client_getuid(f"tcp://{host_port}", None),
        "client tls own credentials": _client_getuid(f"tls://{host_port}", own),
    }
    for port in ports:
        for proto, sec in (("tcp", None), ("tls", own)):
            results[f"rpc {proto} :{port}"] = asyncio.run(_rpc_getuid(f"{proto}://127.0.0.1:{port}", sec))
        results[f"http :{port}"] = _http(port)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
