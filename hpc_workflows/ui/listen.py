"""Listening sockets for the UI, opened by us so that their permissions are ours to set.

uvicorn's own ``uds=`` option makes the socket mode 0666; we bind it ourselves with mode 0600
inside a fresh 0700 folder, so another user cannot even connect.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from hpc_workflows.ui.private import UnsafePathError, private_dir

__all__ = ["MAX_SOCKET_PATH", "default_socket_parent", "new_socket_dir", "tcp_listener", "unix_listener"]

# sun_path is 108 bytes on Linux, including the final NUL.
MAX_SOCKET_PATH = 107
SOCKET_NAME = "ui.sock"


def default_socket_parent() -> Path:
    """Where the socket folder goes: node-local, as sockets do not cross machines.

    ``$HPCW_UI_SOCKET_DIR`` if set, else ``$XDG_RUNTIME_DIR`` (per-user, 0700, on login
    nodes), else the temporary folder (``$TMPDIR`` or ``/tmp``).
    """
    for var in ("HPCW_UI_SOCKET_DIR", "XDG_RUNTIME_DIR"):
        value = os.environ.get(var)
        if value and Path(value).is_dir():
            return Path(value)
    return Path(tempfile.gettempdir())


def new_socket_dir(parent: str | os.PathLike[str] | None = None) -> Path:
    """A fresh folder of mode 0700 for the socket, under ``parent`` (see :func:`default_socket_parent`).

    Raises
    ------
    UnsafePathError
        If the socket path would be too long for a Unix socket.
    """
    base = Path(parent) if parent is not None else default_socket_parent()
    folder = Path(tempfile.mkdtemp(prefix="hpcw-ui-", dir=base))  # mkdtemp: mode 0700, unique
    private_dir(folder)
    path = folder / SOCKET_NAME
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        folder.rmdir()
        raise UnsafePathError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes: "
                              "set HPCW_UI_SOCKET_DIR (or --socket-dir) to a short node-local folder such as /tmp")
    return folder


def unix_listener(folder: Path) -> socket.socket:
    """Bind ``folder/ui.sock`` with mode 0600 and listen; ``folder`` must be private."""
    path = folder / SOCKET_NAME
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600, never briefly open
    try:
        sock.bind(os.fspath(path))
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def tcp_listener(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` (port 0: any free port) and listen."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    return sock
