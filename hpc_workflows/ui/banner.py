"""What the UI prints for its user: the tunnel command and where the secret URL is.

The printed text goes to the job log, which batch systems often create world-readable, so it
never contains the token: only the path of the 0600 file that holds the URL.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["browser_urls", "connection_text", "tunnel_command"]

RULE = "=" * 80


def tunnel_command(*, node: str, local_port: int, login_host: str | None,
                   socket_path: Path | None, host: str | None, port: int | None) -> str:
    """The ``ssh -L`` command that brings the UI to ``localhost:local_port`` on the laptop.

    A Unix socket is forwarded by the node's own sshd (``-L port:/path``, OpenSSH 6.7+), so
    the tunnel goes through the login host (``-J``) to the node. A TCP listener on the node's
    network name is reached from the login host directly.

    Parameters
    ----------
    node
        This node's name, as ssh should reach it.
    local_port
        Port on the laptop end.
    login_host
        Login host to jump through, or None.
    socket_path
        The UI's Unix socket, or None when it listens on ``host:port``.
    host, port
        TCP address when exposed.

    Returns
    -------
    str
        The command, ready to paste.
    """
    if socket_path is not None:
        via = f" -J {login_host}" if login_host else ""
        return f"ssh -N -L {local_port}:{socket_path}{via} {node}"
    return f"ssh -N -L {local_port}:{host}:{port} {login_host or node}"


def browser_urls(token: str, *, local_port: int, host: str | None, port: int | None) -> list[str]:
    """The URLs that open the UI: through the tunnel first, then (if exposed) directly.

    Parameters
    ----------
    token
        The session's secret.
    local_port
        Port on the laptop end of the tunnel.
    host, port
        TCP address when exposed, else None.

    Returns
    -------
    list of str
        One URL per line of the private URL file.
    """
    urls = [f"http://localhost:{local_port}/?token={token}"]
    if host is not None:
        urls.append(f"http://{host}:{port}/?token={token}")
    return urls


def connection_text(*, node: str, local_port: int, login_host: str | None, socket_path: Path | None,
                    host: str | None, port: int | None, url_file: Path) -> str:
    """The message for the job log (no secret in it).

    Parameters
    ----------
    node, local_port, login_host, socket_path, host, port
        As for :func:`tunnel_command`.
    url_file
        The private file holding the URL with the token.
    """
    where = (f"unix socket {socket_path}, only you can connect" if socket_path is not None
             else f"{host}:{port}, token required")
    tunnel = tunnel_command(node=node, local_port=local_port, login_host=login_host,
                            socket_path=socket_path, host=host, port=port)
    hint = "" if login_host or socket_path is None else \
        f"\n    (add -J <login-host> if {node} is reachable only through a login node)"
    return f"""{RULE}
hpc_workflows web UI on {node} ({where})
On your laptop, run:

    {tunnel}{hint}

then open the URL (it holds this session's secret token) written, readable only by you, in

    {url_file}

e.g. ssh {login_host or node} cat {url_file}
{RULE}"""
