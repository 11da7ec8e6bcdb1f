"""Errors raised by the fetch package.

`FetchError` is the public error: it names the source, the field at fault (when one is) and a
reason a user can act on.  `TransferFailed` is internal: transports raise it for one failed
attempt and say whether another attempt could help; `fetch` turns the last one into a
`FetchError`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # pragma: no cover
    from hpc_workflows.fetch.source import Source


_SECRET_PARAM = re.compile(r"(token|key|sig|signature|secret|password|passwd|credential|auth)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with credentials masked, for logs and errors.

    Masks a ``user:password@`` part and the values of query parameters whose names look
    secret (token, key, signature, password, credential, auth...), as in pre-signed URLs.

    Parameters
    ----------
    url : str
        Any URL or path.

    Returns
    -------
    str
        The URL with secrets replaced by ``***``; other strings unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = [p.partition("=") for p in query.split("&")]
        query = "&".join(
            f"{k}{eq}***" if eq and _SECRET_PARAM.search(k) else f"{k}{eq}{v}" for k, eq, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class FetchError(Exception):
    """A source could not be fetched (or its input is invalid).

    Parameters
    ----------
    source : Source or None
        The source concerned.
    reason : str
        What went wrong and, where possible, how to fix it.
    field : str, optional
        The input field at fault (``"url"``, ``"checksum"``, ``"dest_dir"``, ``"command"``...).
    attempts : int
        How many attempts were made.
    """

    def __init__(
        self,
        source: "Source | None",
        reason: str,
        *,
        field: str | None = None,
        attempts: int = 0,
    ) -> None:
        self.source = source
        self.reason = reason
        self.field = field
        self.attempts = attempts
        super().__init__(self._message())

    def __reduce__(self):
        # Steps run in other processes (Dask workers, Dagster subprocesses): the error must
        # survive pickling with its fields, not be rebuilt from the message alone.
        return (_rebuild_fetch_error, (self.source, self.reason, self.field, self.attempts))

    def _message(self) -> str:
        where = ""
        if self.source is not None:
            where = f"source {self.source.key!r} ({redact_url(self.source.url)})"
        else:
            where = "fetch"
        field = f" [field: {self.field}]" if self.field else ""
        tries = f" after {self.attempts} attempt(s)" if self.attempts > 1 else ""
        return f"{where}{field}: {self.reason}{tries}"


def _rebuild_fetch_error(source, reason, field, attempts) -> FetchError:
    return FetchError(source, reason, field=field, attempts=attempts)


class TransferFailed(Exception):
    """One attempt at a transfer failed.

    Parameters
    ----------
    reason : str
        Human-readable cause.
    retryable : bool
        True when another attempt may succeed (dropped connection, 5xx, timeout...).
    retry_after : float, optional
        Seconds the server asked us to wait (``Retry-After``).
    field : str, optional
        Input field at fault, for permanent errors caused by bad input.
    """

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.field = field
