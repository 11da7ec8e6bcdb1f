"""``hpc-workflows ui``: Dagster's web UI served in-process, for its owner only.

``dagster-webserver`` listens on a TCP port that every user of the node can reach (loopback is
not a boundary), and anyone who reaches it can launch runs as its owner. This command serves
the same ASGI app (``dagster_webserver``'s own builder) with uvicorn, but

* on a Unix socket inside a fresh 0700 folder by default (``--host`` for TCP), and
* behind a per-session secret token on every HTTP request and websocket (:mod:`.auth`),

and writes the browser URL, the only place the token is kept, to a 0600 file in a 0700 folder
(``~/.hpc_workflows/ui`` or ``$HPCW_UI_STATE_DIR``). The job log gets the tunnel command and
that file's path, never the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hpc_workflows.ui.auth import TokenAuth, new_token
from hpc_workflows.ui.banner import browser_urls, connection_text
from hpc_workflows.ui.listen import new_socket_dir, tcp_listener, unix_listener
from hpc_workflows.ui.private import UnsafePathError, private_dir, write_private_file

__all__ = ["UiSettings", "UiStartError", "main", "serve_ui"]


class UiStartError(RuntimeError):
    """The UI cannot start with these options; the message names the option and the fix."""


def _default_state_dir() -> Path:
    return Path(os.environ.get("HPCW_UI_STATE_DIR") or Path.home() / ".hpc_workflows" / "ui")


def _session_name() -> str:
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID", "").split(".")[0]
    return f"job-{job}" if job else f"{socket.gethostname()}-{os.getpid()}"


class UiSettings(BaseModel):
    """Options of ``hpc-workflows ui`` (validated before anything is started)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    module: str = Field("hpc_workflows", description="Python module with the Dagster Definitions")
    host: str | None = Field(None, description="listen on this TCP host instead of a Unix socket")
    port: int = Field(0, ge=0, le=65535, description="TCP port with --host (0: any free port)")
    socket_dir: Path | None = Field(None, description="node-local parent of the private socket folder")
    state_dir: Path = Field(default_factory=_default_state_dir,
                            description="private folder for the URL file (shared filesystem)")
    local_port: int = Field(8080, ge=1, le=65535, description="laptop end of the printed tunnel")
    login_host: str | None = Field(None, description="login host the tunnel jumps through")
    # gethostname, not getfqdn: /etc/hosts often maps the FQDN lookup to "localhost".
    node: str = Field(default_factory=socket.gethostname, description="this node's name for ssh")
    session: str = Field(default_factory=_session_name, description="name of the URL file")

    @model_validator(mode="after")
    def _port_needs_host(self) -> UiSettings:
        if self.port and self.host is None:
            raise ValueError("--port needs --host: without --host the UI listens on a Unix socket")
        return self


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    # uvicorn cancels the lifespan task on shutdown; that is the normal way out, not an error.
    with contextlib.suppress(asyncio.CancelledError):
        yield


@contextlib.contextmanager
def _dagster_app(module: str, private_tmp: Path) -> Iterator[Any]:
    """Dagster's webserver ASGI app for ``module``, built as ``dagster-webserver`` builds it."""
    from dagster._cli.utils import get_possibly_temporary_instance_for_cli
    from dagster._cli.workspace.cli_target import workspace_opts_to_load_target
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster_shared.cli import WorkspaceOpts
    from dagster_webserver.app import create_app_from_workspace_process_context
    from dagster_webserver.version import __version__

    # Dagster puts its code server's gRPC socket (which can start runs) under
    # tempfile.gettempdir(), i.e. shared /tmp; make it our private folder instead.
    tempfile.tempdir = os.fspath(private_tmp)
    target = workspace_opts_to_load_target(WorkspaceOpts(module_name=(module,)))
    with get_possibly_temporary_instance_for_cli("hpc-workflows ui") as instance:
        instance.optimize_for_webserver(15000, 3600, 20)  # dagster-webserver's defaults
        with WorkspaceProcessContext(instance, version=__version__, read_only=False,
                                     workspace_load_target=target) as context:
            yield create_app_from_workspace_process_context(context, "", lifespan=_lifespan)


def _exit_on_term(signum: int, frame: Any) -> None:
    # uvicorn re-raises the signal after its graceful shutdown; with the default handler that
    # would kill us before the finally blocks remove the socket and the URL file.
    raise SystemExit(0)


def serve_ui(settings: UiSettings, *, out=sys.stdout) -> None:
    """Serve the UI until SIGTERM/SIGINT; remove the socket folder and the URL file after.

    Parameters
    ----------
    settings
        Validated options.
    out
        Where the connection message goes (the job log).
    """
    import uvicorn

    state = private_dir(settings.state_dir)
    url_file = state / f"{settings.session}.url"
    run_dir = new_socket_dir(settings.socket_dir)
    try:
        if settings.host is None:
            listener = unix_listener(run_dir)
            socket_path, port = run_dir / "ui.sock", None
        else:
            try:
                listener = tcp_listener(settings.host, settings.port)
            except OSError as exc:
                raise UiStartError(f"--host {settings.host} --port {settings.port}: cannot listen there "
                                   f"({exc.strerror or exc}): choose a free port, or this node's name") from None
            socket_path, port = None, listener.getsockname()[1]
        token = new_token()
        write_private_file(url_file, "\n".join(browser_urls(token, local_port=settings.local_port,
                                                            host=settings.host, port=port)) + "\n")
        print(connection_text(node=settings.node, local_port=settings.local_port,
                              login_host=settings.login_host, socket_path=socket_path,
                              host=settings.host, port=port, url_file=url_file), file=out, flush=True)
        signal.signal(signal.SIGTERM, _exit_on_term)
        with _dagster_app(settings.module, run_dir) as app:
            # No access log: the first request carries ?token= in its query string.
            config = uvicorn.Config(TokenAuth(app, token), log_level="warning", access_log=False,
                                    lifespan="on")
            try:
                uvicorn.Server(config).run(sockets=[listener])
            finally:
                # Before Dagster's code server shutdown, which can take a minute: the batch
                # system may SIGKILL us before it ends, and a dead session's URL must not stay.
                url_file.unlink(missing_ok=True)
                if socket_path is not None:
                    socket_path.unlink(missing_ok=True)
    finally:
        url_file.unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpc-workflows ui", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--module", default="hpc_workflows")
    p.add_argument("--host", help="listen on TCP HOST (still token-protected) instead of a Unix socket")
    p.add_argument("--port", type=int, default=0, help="TCP port with --host (default: any free port)")
    p.add_argument("--socket-dir", type=Path, help="node-local parent folder of the socket "
                   "(default: $HPCW_UI_SOCKET_DIR, $XDG_RUNTIME_DIR or $TMPDIR)")
    p.add_argument("--state-dir", type=Path, help="private folder for the URL file "
                   "(default: $HPCW_UI_STATE_DIR or ~/.hpc_workflows/ui)")
    p.add_argument("--local-port", type=int, default=8080, help="laptop port in the printed tunnel")
    p.add_argument("--login-host", help="login host the printed tunnel jumps through")
    p.add_argument("--node", help="this node's name for ssh (default: its hostname)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hpc-workflows ui``; returns the exit status."""
    args = vars(_parser().parse_args(argv))
    try:
        settings = UiSettings(**{k: v for k, v in args.items() if v is not None})
        serve_ui(settings)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "options"
            print(f"hpc-workflows ui: {field}: {err['msg']}", file=sys.stderr)
        return 2
    except (UnsafePathError, UiStartError, OSError) as exc:
        print(f"hpc-workflows ui: {exc}", file=sys.stderr)
        return 2
    return 0
