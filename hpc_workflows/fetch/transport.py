"""Choosing a transport by URL scheme (the interface itself is in `base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hpc_workflows.fetch.base import Transport
from hpc_workflows.fetch.errors import FetchError

if TYPE_CHECKING:  # pragma: no cover
    from hpc_workflows.fetch.settings import FetchSettings
    from hpc_workflows.fetch.source import Source


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
