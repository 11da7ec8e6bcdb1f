"""Archive-command transport: a site's tape/archive client (moo, hsi, mdss...) as an argv template.

The command runs without a shell and placeholders are substituted inside each argument, so a
file name containing spaces, quotes or ``;`` stays one argument and can never run a command.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ContextManager

from hpc_workflows.diskspace import explain_write_failure
from hpc_workflows.fetch.argv import build_argv, option_like_argument
from hpc_workflows.fetch.base import Transfer
from hpc_workflows.fetch.errors import TransferFailed
from hpc_workflows.fetch.hostlimit import host_slot
from hpc_workflows.fetch.settings import validate_command_template

if TYPE_CHECKING:  # pragma: no cover
    from hpc_workflows.fetch.settings import FetchSettings
    from hpc_workflows.fetch.source import Source

# Keep error messages readable: the tail of stderr is what says why.
_STDERR_LIMIT = 2000


def archive_slot(program: str, settings: "FetchSettings") -> ContextManager[None]:
    """Hold one of ``settings.max_archive_commands`` slots for archive client ``program``.

    Tape systems punish many concurrent clients: the cap holds across the threads of a
    process and, through flock'd files in ``host_lock_dir``, across processes and runs
    (see `hpc_workflows.fetch.hostlimit`).
    """
    return host_slot(f"archive-{PurePosixPath(program).name}", settings.max_archive_commands,
                     settings.resolved_host_lock_dir)


def run_client(argv: list[str], settings: "FetchSettings") -> subprocess.CompletedProcess:
    """Run an archive client (no shell) inside an archive slot; map start-up failures to TransferFailed."""
    try:
        with archive_slot(argv[0], settings):
            return subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=settings.command_timeout,
                shell=False,
                check=False,
            )
    except FileNotFoundError:
        raise TransferFailed(
            f"archive client {argv[0]!r} was not found on PATH; install it or fix the first "
            "element of FetchSettings.command",
            retryable=False,
            field="command",
        ) from None
    except PermissionError:
        raise TransferFailed(f"archive client {argv[0]!r} is not executable", retryable=False, field="command") from None
    except subprocess.TimeoutExpired:
        raise TransferFailed(
            f"{argv[0]} did not finish within command_timeout={settings.command_timeout}s", retryable=True
        ) from None


def stderr_tail(proc: subprocess.CompletedProcess) -> str:
    """The end of a client's stderr (where it says why), or ``(no stderr)``."""
    return proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_LIMIT:] or "(no stderr)"


class CommandTransport:
    """Fetch with an external archive client given as an argument-list template."""

    name = "command"
    # Archive clients restart whole files; a leftover .part is removed before each attempt.
    supports_resume = False

    def __init__(self, template: list[str]) -> None:
        validate_command_template(template)
        self.template = list(template)

    def _run(self, src: str, dest: Path, key: str, settings: "FetchSettings") -> None:
        argv = build_argv(self.template, src=src, dest=str(dest), key=key, name=PurePosixPath(src).name)
        bad = option_like_argument(self.template, argv)
        if bad is not None:
            # Config validation refuses these already; this guards library callers too.
            raise TransferFailed(
                f"argument {argv[bad]!r} (from {self.template[bad]!r}) starts with '-' and "
                f"{argv[0]} would read it as an option; rename it or put '--' before it in the command",
                retryable=False,
                field="url",
            )
        proc = run_client(argv, settings)
        if proc.returncode != 0:
            # A client that died on a full disk says so in its own words, if at all.
            full = explain_write_failure(OSError(), dest)
            if full is not None:
                dest.unlink(missing_ok=True)  # cannot be resumed, and it holds the space
                raise TransferFailed(str(full), retryable=False, field="dest_dir")
            permanent = proc.returncode in settings.command_permanent_exit_codes
            raise TransferFailed(
                f"{argv[0]} exited with status {proc.returncode}: {stderr_tail(proc)}",
                retryable=not permanent,
                field="url" if permanent else None,
            )
        if not dest.is_file():
            raise TransferFailed(f"{argv[0]} exited 0 but wrote no file at {dest}", retryable=True)

    def retrieve(
        self, source: "Source", part: Path, offset: int, algorithms: frozenset[str], settings: "FetchSettings"
    ) -> Transfer:
        # Clients such as `moo get` refuse to overwrite (or append to) an existing file.
        part.unlink(missing_ok=True)
        self._run(source.url, part, source.key, settings)
        return Transfer(total_size=None)

    def read_text(self, url: str, settings: "FetchSettings") -> str:
        # A fresh folder: archive clients refuse to overwrite an existing destination.
        with tempfile.TemporaryDirectory(prefix="hpcwf-sidecar-") as folder:
            dest = Path(folder) / PurePosixPath(url).name
            self._run(url, dest, "sidecar", settings)
            return dest.read_text(encoding="utf-8")
