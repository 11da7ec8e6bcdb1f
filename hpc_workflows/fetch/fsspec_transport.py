"""Optional fsspec transport (s3://, gs://, ... when the matching fsspec backend is installed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpc_workflows.fetch.errors import TransferFailed
from hpc_workflows.fetch.partfile import PartWriter
from hpc_workflows.fetch.base import Transfer

if TYPE_CHECKING:  # pragma: no cover
    from hpc_workflows.fetch.settings import FetchSettings
    from hpc_workflows.fetch.source import Source


class FsspecTransport:
    """Stream any URL fsspec can open, resuming by seeking to the kept offset."""

    name = "fsspec"
    supports_resume = True

    def retrieve(
        self, source: "Source", part: Path, offset: int, algorithms: frozenset[str], settings: "FetchSettings"
    ) -> Transfer:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(source.url)
            total = fs.size(path)
            with fs.open(path, "rb") as fin, PartWriter(part, offset, algorithms, early_writeback=settings.fsync) as out:
                if offset:
                    fin.seek(offset)
                while True:
                    block = fin.read(settings.chunk_size)
                    if not block:
                        break
                    out.write(block)
                digests = out.digests()
        except FileNotFoundError:
            raise TransferFailed(f"{source.url} does not exist", retryable=False, field="url") from None
        except PermissionError as exc:
            raise TransferFailed(f"access denied to {source.url}: {exc}", retryable=False, field="url") from None
        except (OSError, ValueError) as exc:
            raise TransferFailed(f"fsspec transfer failed: {exc}", retryable=True) from None
        return Transfer(total_size=total, resumed_from=offset, digests=digests)

    def read_text(self, url: str, settings: "FetchSettings") -> str:
        import fsspec

        try:
            with fsspec.open(url, "rt") as fh:
                return fh.read()
        except FileNotFoundError:
            raise TransferFailed(f"sidecar {url} does not exist", retryable=False, field="checksum_sidecar") from None
        except (OSError, ValueError) as exc:
            raise TransferFailed(f"cannot read {url}: {exc}", retryable=True) from None
