"""Checks on planned sources that need no network, run with config validation before any work.

A URL with a bad port or unbalanced IPv6 brackets, a transport that cannot fetch a scheme, or a
file name that an archive client would read as an option must fail when the run is created,
with the source and the fix named, not in a step after its retries or a batch job's queue wait.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import PurePosixPath
from typing import Iterable
from urllib.parse import urlsplit

from hpc_workflows.fetch.argv import build_argv, check_command_arguments, single_file_form
from hpc_workflows.fetch.errors import FetchError
from hpc_workflows.fetch.settings import FetchSettings
from hpc_workflows.fetch.source import Source
from hpc_workflows.fetch.transport import choose_transport, scheme_of

logger = logging.getLogger("hpc_workflows.fetch")

# RFC 3986 reg-name characters we accept in a host name (no spaces, no brackets).
_HOST_RE = re.compile(r"^[A-Za-z0-9._~%!$&'()*+,;=-]+$")


def check_url(url: str) -> None:
    """Refuse an ``http(s)://`` URL that cannot be requested as written.

    Checks the host (present; a valid IPv6 address inside balanced brackets), the port
    (1-65535) and whitespace.  Other schemes are left to their transports.

    Raises
    ------
    ValueError
        Saying what is wrong and how to write it instead.
    """
    if not url.lower().startswith(("http://", "https://")):
        return
    if any(ch.isspace() for ch in url):
        raise ValueError(f"url {url!r} contains whitespace: percent-encode spaces as %20")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": an unbalanced '[' or ']'
        raise ValueError(
            f"url {url!r} is malformed ({exc}): write an IPv6 host in brackets, e.g. http://[::1]:8080/path"
        ) from None
    netloc_host = parts.netloc.rpartition("@")[2]
    host = parts.hostname
    if not host:
        raise ValueError(f"url {url!r} has no host: write it as {parts.scheme}://host[:port]/path")
    if netloc_host.startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"url {url!r}: {host!r} in brackets is not an IPv6 address") from None
    elif not _HOST_RE.match(host) or ":" in host:
        raise ValueError(
            f"url {url!r}: host {host!r} is not a valid host name (IPv6 addresses need brackets)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(
            f"url {url!r}: the port {netloc_host.rpartition(':')[2]!r} is not a number from 1 to 65535"
        ) from None
    if port == 0:
        raise ValueError(f"url {url!r}: port 0 is not a port you can connect to; use 1 to 65535")


def check_planned_sources(
    sources: Iterable[Source], transport: str = "auto", command: list[str] | None = None,
    origin: str = "source", batch_command: list[str] | None = None,
) -> None:
    """Check every planned source before any work: URL syntax, transport choice, command argv.

    Parameters
    ----------
    sources : iterable of Source
        The planned sources (from a template or a manifest).
    transport : str
        ``source.transport`` (``"auto"`` or ``"command"``...).
    command : list of str, optional
        ``source.command``, the archive client template.
    origin : str
        The config field the sources came from (``source.template``...), for the message.
    batch_command : list of str, optional
        ``source.batch_command``, checked like ``command`` for each file.

    Raises
    ------
    ValueError
        For the first source that cannot be fetched as configured, naming it and the fix.
    """
    settings = FetchSettings(transport=transport, command=list(command) if command else None)
    transport_of_scheme: dict[str, str] = {}
    for source in sources:
        try:
            check_url(source.url)
        except ValueError as exc:
            raise ValueError(f"{origin}: source {source.key!r}: {exc}") from None
        scheme = scheme_of(source.url)
        if scheme not in transport_of_scheme:
            try:
                transport_of_scheme[scheme] = choose_transport(source, settings).name
            except FetchError as exc:
                raise ValueError(f"{origin}: {exc}") from None
        if transport_of_scheme[scheme] == "command" and settings.command:
            # The real destination is an absolute path under output.workdir; only the source's
            # own values ({src}, {name}) can start with '-'.
            templates = [settings.command] + ([single_file_form(batch_command)] if batch_command else [])
            for template in templates:
                argv = build_argv(template, src=source.url, dest=f"/{source.filename}.part",
                                  key=source.key, name=PurePosixPath(source.url).name)
                try:
                    check_command_arguments(template, argv, source)
                except ValueError as exc:
                    raise ValueError(f"{origin}: {exc}") from None
