"""Filesystem transport: plain paths and ``file://`` URLs, hard-linked when possible, else copied."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from hpc_workflows.fetch.errors import TransferFailed
from hpc_workflows.fetch.partfile import PartWriter
from hpc_workflows.fetch.source import expand_iris_sample_data
from hpc_workflows.fetch.base import Transfer

if TYPE_CHECKING:  # pragma: no cover
    from hpc_workflows.fetch.settings import FetchSettings
    from hpc_workflows.fetch.source import Source

# Errors that mean "cannot hard-link here", after which a copy is the right fallback.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}


def local_path(url: str) -> Path:
    """Turn a plain path or ``file://`` URL into a local Path (``{iris_sample_data}`` expanded)."""
    url = expand_iris_sample_data(url)
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    return Path(url).expanduser()


class FilesystemTransport:
    """Copy (or hard-link) a file that is visible on a local or shared filesystem."""

    name = "filesystem"
    # A local copy is fast and restartable from zero; partial copies are not worth resuming.
    supports_resume = False

    def retrieve(
        self, source: "Source", part: Path, offset: int, algorithms: frozenset[str], settings: "FetchSettings"
    ) -> Transfer:
        src = local_path(source.url)
        try:
            st = src.stat()
        except FileNotFoundError:
            raise TransferFailed(f"file {src} does not exist", retryable=False, field="url") from None
        except OSError as exc:
            # Shared filesystems (NFS, Lustre) have transient hiccups: worth a retry.
            raise TransferFailed(f"cannot stat {src}: {exc.strerror}", retryable=True) from None
        if not src.is_file():
            raise TransferFailed(f"{src} is not a regular file", retryable=False, field="url")
        if settings.link:
            try:
                part.unlink(missing_ok=True)
                os.link(src, part)
                # Hashing is left to fetch (digests=None): the data was not read here.
                return Transfer(total_size=st.st_size)
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise TransferFailed(f"cannot link {src} to {part}: {exc.strerror}", retryable=True) from None
        try:
            with open(src, "rb") as fin, PartWriter(part, 0, algorithms, early_writeback=settings.fsync) as out:
                while True:
                    block = fin.read(settings.chunk_size)
                    if not block:
                        break
                    out.write(block)
                digests = out.digests()
        except PermissionError as exc:
            raise TransferFailed(f"permission denied reading {src}: {exc}", retryable=False, field="url") from None
        except OSError as exc:
            raise TransferFailed(f"copy of {src} failed: {exc}", retryable=True) from None
        return Transfer(total_size=st.st_size, digests=digests)

    def read_text(self, url: str, settings: "FetchSettings") -> str:
        path = local_path(url)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TransferFailed(f"sidecar {path} does not exist", retryable=False, field="checksum_sidecar") from None
        except OSError as exc:
            raise TransferFailed(f"cannot read {path}: {exc}", retryable=True) from None
