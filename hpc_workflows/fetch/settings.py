"""`FetchSettings`: every knob of a fetch in one typed, validated place."""

from __future__ import annotations

import string
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

TRANSPORTS = ("auto", "http", "filesystem", "command", "fsspec")
COMMAND_PLACEHOLDERS = ("src", "dest", "name", "key")


def validate_command_template(command: list[str]) -> None:
    """Check an archive-client argument template; raise ValueError naming ``command``.

    Each argument may use ``{src}``, ``{dest}``, ``{name}`` and ``{key}``; ``{src}`` and
    ``{dest}`` must both appear.  Literal braces are written ``{{`` / ``}}``.
    """
    if not isinstance(command, (list, tuple)) or not command or not all(isinstance(a, str) for a in command):
        raise ValueError(
            f"FetchSettings.command must be a non-empty list of strings such as "
            f"['moo', 'get', '-f', '{{src}}', '{{dest}}'], got {command!r}"
        )
    seen: set[str] = set()
    for arg in command:
        try:
            parsed = list(string.Formatter().parse(arg))
        except ValueError as exc:
            raise ValueError(
                f"FetchSettings.command argument {arg!r} is malformed ({exc}); write literal "
                "braces as '{{' and '}}'"
            ) from None
        for _, name, spec, conv in parsed:
            if name is None:
                continue
            if name not in COMMAND_PLACEHOLDERS or spec or conv:
                raise ValueError(
                    f"FetchSettings.command argument {arg!r} uses unknown placeholder "
                    f"{{{name}}}; valid ones are " + ", ".join(f"{{{p}}}" for p in COMMAND_PLACEHOLDERS)
                )
            seen.add(name)
    missing = {"src", "dest"} - seen
    if missing:
        raise ValueError(
            f"FetchSettings.command {command!r} must contain " + " and ".join(f"{{{m}}}" for m in sorted(missing))
        )


BATCH_PLACEHOLDERS = ("src", "dest_dir")


def validate_batch_command(command: list[str]) -> None:
    """Check a batch archive-client template; raise ValueError naming ``batch_command``.

    One argument must be exactly ``{src}`` (it becomes one argument per file of the batch) and
    ``{dest_dir}`` (the folder the client writes them into, each under its own name) must
    appear, e.g. ``["moo", "get", "-f", "{src}", "{dest_dir}"]``.
    """
    example = "['moo', 'get', '-f', '{src}', '{dest_dir}']"
    if not isinstance(command, (list, tuple)) or not command or not all(isinstance(a, str) for a in command):
        raise ValueError(f"FetchSettings.batch_command must be a non-empty list of strings such as {example}, "
                         f"got {command!r}")
    seen: set[str] = set()
    for arg in command:
        try:
            parsed = list(string.Formatter().parse(arg))
        except ValueError as exc:
            raise ValueError(f"FetchSettings.batch_command argument {arg!r} is malformed ({exc})") from None
        for _, name, spec, conv in parsed:
            if name is None:
                continue
            if name not in BATCH_PLACEHOLDERS or spec or conv:
                raise ValueError(f"FetchSettings.batch_command argument {arg!r} uses unknown placeholder {{{name}}}; "
                                 "valid ones are {src} and {dest_dir}")
            if name == "src" and arg != "{src}":
                raise ValueError(f"FetchSettings.batch_command: {{src}} must be an argument on its own (it becomes "
                                 f"one argument per file), not part of {arg!r}; e.g. {example}")
            seen.add(name)
    if command.count("{src}") != 1 or "dest_dir" not in seen:
        raise ValueError(f"FetchSettings.batch_command {command!r} must contain one '{{src}}' argument and "
                         f"{{dest_dir}}, e.g. {example}")


@dataclass
class FetchSettings:
    """How to fetch sources.  Defaults suit a shared HPC login node.

    Parameters
    ----------
    transport : str
        ``"auto"`` (choose by URL scheme), ``"http"``, ``"filesystem"``, ``"command"`` or
        ``"fsspec"``.
    command : list of str, optional
        Archive client template for the command transport, e.g.
        ``["moo", "get", "-f", "{src}", "{dest}"]``.  Run without a shell; placeholders
        (``{src}``, ``{dest}``, ``{name}``, ``{key}``) are substituted inside each argument.
    retries : int
        Further attempts after the first one fails with a transient error.
    backoff_initial, backoff_factor, backoff_max : float
        Delay before retry *n* is ``min(backoff_max, backoff_initial * backoff_factor**(n-1))``.
    jitter : float
        Fraction of the delay added at random (0..jitter) so that many workers do not retry
        in lock-step.
    retry_after_max : float
        Upper bound on a server's ``Retry-After`` we are willing to honour, in seconds.
    connect_timeout, read_timeout : float
        HTTP timeouts in seconds (read timeout = longest silence while receiving).
    command_timeout : float, optional
        Seconds before a hung archive command is killed (None: no limit).
    command_permanent_exit_codes : list of int
        Exit statuses of the archive client that mean retrying cannot help (e.g. ``[2]`` for
        ``moo``'s user errors such as a wrong path): fail at once.  Others are retried.
    max_connections_per_host : int
        Concurrent connections to one host, across the threads of a process and, through
        lock files in ``host_lock_dir``, across processes.
    host_lock_dir : str, optional
        Folder for the cross-process connection slots: ``"auto"`` (default) is a node-local
        per-user temporary folder, a path on a shared filesystem with working ``flock``
        extends the cap across nodes, None limits threads of one process only.
    chunk_size : int
        Bytes per read/write while streaming.
    checksum_sidecar : str, optional
        ``"sha256"`` or ``"md5"``: fetch ``<url>.<alg>`` and verify against it when the
        source has no checksum.
    resume : bool
        Resume partial ``.part`` downloads with HTTP ``Range`` requests.
    link : bool
        Filesystem transport: hard-link instead of copying when on the same filesystem.
    verify_tls : bool
        Verify HTTPS certificates.
    fsync : bool
        Flush each file to disk before renaming it to its final name, so even a node crash
        cannot leave a truncated file under that name.  Turning it off keeps atomicity against
        killed jobs (the rename still happens only after verification) and saves time on
        filesystems where fsync is slow.
    headers : dict
        Extra HTTP request headers (never logged).
    batch_command : list of str, optional
        Batch form of the archive client for `fetch_batch`: ``{src}`` (an argument on its
        own) becomes one argument per file, ``{dest_dir}`` the folder they are recalled into,
        e.g. ``["moo", "get", "-f", "{src}", "{dest_dir}"]``: one request, one tape pass.
    max_archive_commands : int
        Archive-client commands (single or batch) running at once, across the threads of a
        process and, through lock files in ``host_lock_dir``, across processes and runs.
    """

    transport: str = "auto"
    command: list[str] | None = None
    retries: int = 5
    backoff_initial: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 60.0
    jitter: float = 0.5
    retry_after_max: float = 300.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    command_timeout: float | None = None
    command_permanent_exit_codes: list[int] = field(default_factory=list)
    max_connections_per_host: int = 4
    host_lock_dir: str | None = "auto"
    chunk_size: int = 1 << 20
    checksum_sidecar: str | None = None
    resume: bool = True
    link: bool = True
    verify_tls: bool = True
    fsync: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    batch_command: list[str] | None = None
    max_archive_commands: int = 2

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(
                f"FetchSettings.transport {self.transport!r} is unknown; use one of {', '.join(TRANSPORTS)}"
            )
        if self.transport == "command" and self.command is None:
            raise ValueError(
                "FetchSettings.command is required when transport='command', e.g. "
                "['moo', 'get', '-f', '{src}', '{dest}']"
            )
        if self.command is not None:
            self.command = list(self.command) if isinstance(self.command, (list, tuple)) else self.command
            validate_command_template(self.command)
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"FetchSettings.retries must be an integer >= 0, got {self.retries!r}")
        for name in ("backoff_initial", "backoff_max", "jitter", "retry_after_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"FetchSettings.{name} must be a number >= 0, got {value!r}")
        if not isinstance(self.backoff_factor, (int, float)) or self.backoff_factor < 1:
            raise ValueError(f"FetchSettings.backoff_factor must be >= 1, got {self.backoff_factor!r}")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"FetchSettings.{name} must be a number of seconds > 0, got {value!r}")
        if self.command_timeout is not None and self.command_timeout <= 0:
            raise ValueError(f"FetchSettings.command_timeout must be > 0 or None, got {self.command_timeout!r}")
        codes = self.command_permanent_exit_codes
        if not isinstance(codes, (list, tuple)) or not all(isinstance(c, int) and c != 0 for c in codes):
            raise ValueError(
                f"FetchSettings.command_permanent_exit_codes must be a list of non-zero integers, got {codes!r}"
            )
        self.command_permanent_exit_codes = list(codes)
        if not isinstance(self.max_connections_per_host, int) or self.max_connections_per_host < 1:
            raise ValueError(
                f"FetchSettings.max_connections_per_host must be an integer >= 1, got {self.max_connections_per_host!r}"
            )
        if self.batch_command is not None:
            self.batch_command = list(self.batch_command) if isinstance(self.batch_command, (list, tuple)) \
                else self.batch_command
            validate_batch_command(self.batch_command)
        if not isinstance(self.max_archive_commands, int) or self.max_archive_commands < 1:
            raise ValueError(
                f"FetchSettings.max_archive_commands must be an integer >= 1, got {self.max_archive_commands!r}"
            )
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1024:
            raise ValueError(f"FetchSettings.chunk_size must be an integer >= 1024, got {self.chunk_size!r}")
        if self.checksum_sidecar not in (None, "sha256", "md5"):
            raise ValueError(
                f"FetchSettings.checksum_sidecar must be None, 'sha256' or 'md5', got {self.checksum_sidecar!r}"
            )

    @property
    def resolved_host_lock_dir(self) -> str | None:
        """``host_lock_dir`` with ``"auto"`` replaced by the node-local default folder."""
        if self.host_lock_dir == "auto":
            from hpc_workflows.fetch.hostlimit import default_lock_dir

            return default_lock_dir()
        return self.host_lock_dir

    @property
    def max_attempts(self) -> int:
        """Total attempts allowed (first try plus retries)."""
        return self.retries + 1

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "FetchSettings":
        """Build settings from a config mapping, rejecting unknown keys with a clear message."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown fetch setting(s) {', '.join(unknown)}; valid settings are {', '.join(sorted(known))}"
            )
        return cls(**values)
