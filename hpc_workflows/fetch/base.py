"""The small interface every transport implements (no transport imports this package's others).

Kept apart from `transport` (which chooses one by URL scheme and so imports every transport):
transports import only this module, so there is no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

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
