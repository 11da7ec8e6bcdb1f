"""Stand-alone probe (standard library only) run by the second unix user against a UI.

Usage: python probe.py TARGET [TOKEN]
TARGET is ``tcp:HOST:PORT`` or ``unix:/path/to/ui.sock``. Prints one JSON object: for each
attempt (plain GET, GraphQL query, launchRun mutation, websocket handshake) the HTTP status,
or the connection error's name. Kept free of our package: the other user cannot import it.
"""

from __future__ import annotations

import json
import socket
import sys

QUERY = '{"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"}'
LAUNCH = json.dumps({
    "query": "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename } }",
    "variables": {"p": {"selector": {"repositoryLocationName": "hpc_workflows",
                                     "repositoryName": "__repository__", "jobName": "fetch_and_regrid"},
                        "runConfigData": {}}}})


def connect(target: str) -> socket.socket:
    kind, _, rest = target.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(rest)
        return sock
    host, _, port = rest.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=30)


def exchange(target: str, request: bytes) -> str:
    """Send a raw HTTP request; return the status code, or the connection error's name."""
    try:
        with connect(target) as sock:
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        return type(exc).__name__
    parts = head.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else "no answer"


def request(method: str, path: str, body: str = "", extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}").encode()


def main() -> None:
    target = sys.argv[1]
    auth = f"Authorization: token {sys.argv[2]}\r\n" if len(sys.argv) > 2 else ""
    websocket = ("GET /graphql HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 f"Sec-WebSocket-Protocol: graphql-ws\r\n{auth}\r\n").encode()
    print(json.dumps({
        "get": exchange(target, request("GET", "/", extra=auth)),
        "graphql": exchange(target, request("POST", "/graphql", QUERY, auth)),
        "launch": exchange(target, request("POST", "/graphql", LAUNCH, auth)),
        "websocket": exchange(target, websocket),
    }))


if __name__ == "__main__":
    main()
