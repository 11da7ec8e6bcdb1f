"""The small interface every transport implements, and choosing one by URL scheme."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from hpc_workflows.fetch.errors import FetchError

if TYPE_CHECKING:  # pragma: no cover
    from hpc_workflows.fetch.settings import FetchSettings
    from hpc_workflows.fetch.source import Source


@dataclass
class Transfer:
    """What one successful transport attempt reports back to `fetch`.

    Attributes
    ----------
    total_size : int or None
        Size the complete file must have, when the transport knows it (Content-Length...).
    resumed_from : int
        Bytes kept from an earlier partial download.
    digests : dict or None
        ``{algorithm: hexdigest}`` when the transport hashed the data while writing it;
        None makes `fetch` hash the finished ``.part`` file itself.
    """

    total_size: int | None = None
    resumed_from: int = 0
    digests: dict[str, str] | None = None


class Transport(Protocol):
    """A way of getting bytes from a source URL into a local ``.part`` file."""

    #: Short name shown in logs and metadata.
    name: str
    #: True when `retrieve` can continue a partial ``.part`` file from ``offset``.
    supports_resume: bool

    def retrieve(
        self, source: "Source", part: Path, offset: int, algorithms: frozenset[str], settings: "FetchSettings"
    ) -> Transfer:
        """Write the source's bytes to ``part`` (continuing from ``offset`` when > 0).

        Raises `TransferFailed` for a failed attempt.
        """
        ...

    def read_text(self, url: str, settings: "FetchSettings") -> str:
        """Return a small text resource (a checksum sidecar); raise `TransferFailed` on failure."""
        ...


def scheme_of(url: str) -> str:
    """Return the URL scheme (``"file"`` for plain paths)."""
    if url.startswith("/") or url.startswith("."):
        return "file"
    scheme = urlsplit(url).scheme.lower()
    # A Windows-style or relative path has no scheme; treat it as a path.
    return scheme if scheme and len(scheme) > 1 else "file"


def choose_transport(source: "Source", settings: "FetchSettings") -> Transport:
    """Pick the transport for ``source``: explicit in settings, else by URL scheme.

    Raises
    ------
    FetchError
        For an unknown scheme (naming ``url`` and the supported schemes).
    """
    # Imported here so that importing the package stays light and cycles are avoided.
    from hpc_workflows.fetch.command import CommandTransport
    from hpc_workflows.fetch.filesystem import FilesystemTransport
    from hpc_workflows.fetch.http import HttpTransport

    kind = settings.transport
    scheme = scheme_of(source.url)
    if kind == "auto":
        if settings.command is not None and scheme not in ("http", "https", "file"):
            kind = "command"
        elif scheme in ("http", "https"):
            kind = "http"
        elif scheme == "file":
            kind = "filesystem"
        elif _fsspec_knows(scheme):
            kind = "fsspec"
        else:
            raise FetchError(
                source,
                f"unknown URL scheme {scheme!r}; supported: http://, https://, file:// or a plain path, "
                "fsspec URLs (s3://, gs://... when the fsspec backend is installed), or set "
                "transport='command' with an archive client command",
                field="url",
            )
    if kind == "http":
        if scheme not in ("http", "https"):
            raise FetchError(source, f"transport 'http' cannot fetch a {scheme!r} URL", field="url")
        return HttpTransport()
    if kind == "filesystem":
        if scheme != "file":
            raise FetchError(source, f"transport 'filesystem' cannot fetch a {scheme!r} URL", field="url")
        return FilesystemTransport()
    if kind == "command":
        if settings.command is None:
            raise FetchError(source, "transport 'command' needs FetchSettings.command", field="command")
        return CommandTransport(settings.command)
    if kind == "fsspec":
        from hpc_workflows.fetch.fsspec_transport import FsspecTransport

        if not _fsspec_knows(scheme):
            raise FetchError(source, f"fsspec has no installed backend for {scheme!r} URLs", field="url")
        return FsspecTransport()
    raise FetchError(source, f"unknown transport {kind!r}", field="transport")  # pragma: no cover


def _fsspec_knows(scheme: str) -> bool:
    try:
        import fsspec
        from fsspec.registry import known_implementations
    except ImportError:
        return False
    if scheme not in known_implementations:
        return False
    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError):
        return False
    return True
