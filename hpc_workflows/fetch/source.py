"""The `Source` record: one file to fetch, with a stable key for Dagster fan-out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from hpc_workflows.fetch.verify import parse_checksum

# Dagster mapping keys allow only these characters.
_KEY_RE = re.compile(r"^[A-Za-z0-9_]+$")
_IRIS_FIELD = "{iris_sample_data}"


@dataclass(frozen=True)
class Source:
    """One file to fetch.

    Parameters
    ----------
    key : str
        Stable identifier (``[A-Za-z0-9_]+``), usually derived from the date, e.g. ``"20200214"``.
    url : str
        ``https://``, ``http://``, ``file://``, a plain path, or an archive path for the command
        transport (e.g. ``moose:/adhoc/projects/radar/20200214.tar``).
    time : datetime, optional
        The date/time the file covers.
    checksum : str, optional
        ``"sha256:<hex>"`` or ``"md5:<hex>"``.
    size : int, optional
        Expected size in bytes.
    """

    key: str
    url: str
    time: datetime | None = None
    checksum: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY_RE.match(self.key):
            raise ValueError(
                f"Source key {self.key!r} (url {self.url!r}) is invalid [field: key]: use only "
                "letters, digits and '_' (it becomes a Dagster mapping key)"
            )
        if not isinstance(self.url, str) or not self.url.strip():
            raise ValueError(f"Source {self.key!r} has an empty url [field: url]")
        if self.checksum is not None:
            try:
                parse_checksum(self.checksum)
            except ValueError as exc:
                raise ValueError(f"Source {self.key!r} ({self.url}) [field: checksum]: {exc}") from None
        if self.size is not None and (not isinstance(self.size, int) or self.size < 0):
            raise ValueError(
                f"Source {self.key!r} ({self.url}) [field: size]: {self.size!r} is not a "
                "non-negative integer number of bytes"
            )

    @property
    def filename(self) -> str:
        """The file name the source is saved under (last path component of the URL)."""
        return filename_for(self.url, self.key)


def filename_for(url: str, key: str) -> str:
    """Return the local file name for ``url``, falling back to ``key`` when it has none."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "file", "s3", "gs", "gcs", "az", "abfs"):
        path = unquote(parts.path)
    else:
        # Plain paths and archive paths such as "moose:/a/b.tar": keep every character,
        # because archive file names may legitimately contain '?', '#', spaces, quotes...
        path = url
    name = PurePosixPath(path).name
    if name in ("", ".", ".."):
        return key
    return name


def iris_sample_data_dir() -> str:
    """Return the installed iris-sample-data folder (for ``{iris_sample_data}`` paths)."""
    try:
        import iris_sample_data
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise ValueError(
            "a path uses {iris_sample_data} but the iris-sample-data package is not installed; "
            "install it with `pip install iris-sample-data`"
        ) from exc
    return str(iris_sample_data.path)


def expand_iris_sample_data(text: str) -> str:
    """Replace ``{iris_sample_data}`` in ``text`` by the installed sample-data folder."""
    if _IRIS_FIELD in text:
        return text.replace(_IRIS_FIELD, iris_sample_data_dir())
    return text
