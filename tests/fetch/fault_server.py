"""A real threaded HTTP/1.1 server on loopback that serves files and injects faults on demand.

Each request is recorded in ``server.log`` (method, path, Range and If-Range headers, status,
bytes of body sent), so tests can prove what the client really did (e.g. that a resume asked
only for the remainder).  Faults are queued per path and consumed one per request:

- ``Fault("drop", at=N)``: send headers for the whole body, N bytes, then reset the connection.
- ``Fault("truncate", at=N)``: Content-Length says the full size, N bytes sent, clean close.
- ``Fault("status", status=500)``: an error status (``retry_after`` adds a Retry-After header).
- ``Fault("corrupt")``: the full body with one byte flipped (wrong checksum).
- ``Fault("stall", at=N)``: N bytes then silence until the client gives up (or the server stops).
- ``Fault("ignore_range")``: answer a Range request with the whole body (200).
- ``Fault("redirect", location="/other")``: a 302 to another path.
Paths with no file give 404.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Fault:
    kind: str
    at: int = 0
    status: int = 500
    retry_after: str | None = None
    location: str = ""


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int = 0
    sent: int = 0
    t: float = 0.0  # time.monotonic() when the request arrived
    proxied_for: str | None = None  # the absolute URL, when the server was used as a proxy
    authorization: str | None = None  # the Authorization header as received
    host: str | None = None  # the Host header as received


class FaultServer:
    """Serve ``files`` (url path -> bytes or Path) on 127.0.0.1 with queued faults."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.log: list[Request] = []
        self.active = 0
        #: Seconds every request waits before answering (to make concurrent requests overlap).
        self.hold = 0.0
        self.max_active = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        handler = type("Handler", (_Handler,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.scheme = "http"
        if tls is not None:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- test-facing API ---------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes | Path) -> str:
        """Serve ``data`` at ``path``; return its full URL."""
        self.files[path] = data
        return self.url(path)

    def inject(self, path: str, *faults: Fault) -> None:
        self.faults[path].extend(faults)

    def requests(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.log if path is None or r.path == path]

    def start(self) -> "FaultServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases stalled handlers
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    owner: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass

    def handle(self) -> None:
        # A client that gives up (timeout, closed early) resets the connection: not an error.
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        owner = self.owner
        target = self.path
        proxied = target.startswith("http://")
        if proxied:  # absolute-form request: we are being used as a forward proxy
            target = "/" + target.split("://", 1)[1].split("/", 1)[1]
        path = target.split("?", 1)[0]
        record = Request("GET", path, self.headers.get("Range"), self.headers.get("If-Range"), t=time.monotonic(),
                         proxied_for=self.path if proxied else None,
                         authorization=self.headers.get("Authorization"), host=self.headers.get("Host"))
        with owner._lock:
            owner.log.append(record)
            owner.active += 1
            owner.max_active = max(owner.max_active, owner.active)
            fault = owner.faults[path].popleft() if owner.faults[path] else None
        try:
            if owner.hold:
                owner._stop.wait(owner.hold)
            self._serve(path, record, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with owner._lock:
                owner.active -= 1

    def _serve(self, path: str, record: Request, fault: Fault | None) -> None:
        data = self.owner.files.get(path)
        if fault is not None and fault.kind == "redirect":
            self.send_response(302)
            self.send_header("Location", fault.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            record.status = 302
            return
        if fault is not None and fault.kind == "status":
            self._status(record, fault.status, fault.retry_after)
            return
        if data is None:
            self._status(record, 404)
            return
        size = data.stat().st_size if isinstance(data, Path) else len(data)
        etag = f'"{size}-{abs(hash(path)) % 10**8}"'
        start = 0
        rng = record.range
        if rng and (fault is None or fault.kind != "ignore_range") and (record.if_range in (None, etag)):
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                record.status = 416
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            record.status = 206
        else:
            self.send_response(200)
            record.status = 200
        self.send_header("Content-Length", str(size - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        limit = size - start
        if fault is not None and fault.kind in ("drop", "truncate", "stall"):
            limit = min(limit, fault.at)
        self._send_body(data, start, limit, record, corrupt=fault is not None and fault.kind == "corrupt")
        if fault is None or fault.kind in ("corrupt", "ignore_range"):
            return
        self.wfile.flush()
        self.close_connection = True
        if fault.kind == "stall":
            self.owner._stop.wait(30)
        elif fault.kind == "drop":
            # SO_LINGER 0: close() sends RST, like a crashed proxy or a cut network.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _send_body(self, data: bytes | Path, start: int, count: int, record: Request, corrupt: bool) -> None:
        if isinstance(data, Path):
            self.wfile.flush()
            with open(data, "rb") as fh:
                sent = 0
                while sent < count:
                    n = os.sendfile(self.connection.fileno(), fh.fileno(), start + sent, count - sent)
                    if n == 0:
                        break
                    sent += n
            record.sent = sent
            return
        body = data[start:start + count]
        if corrupt and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.wfile.write(body)
        record.sent = len(body)

    def _status(self, record: Request, status: int, retry_after: str | None = None) -> None:
        body = f"status {status}\n".encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        record.status = status
