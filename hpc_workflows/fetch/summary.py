"""Run-level summary of many fetches: done, skipped, failed, bytes, throughput."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from hpc_workflows.fetch.errors import FetchError
from hpc_workflows.fetch.fetcher import FetchResult


@dataclass
class RunSummary:
    """Totals over a run's fetches.

    Attributes
    ----------
    done, skipped, failed : int
        Files fetched now, already complete, and failed.
    bytes : int
        Bytes fetched now (skipped files not counted).
    seconds : float
        Sum of per-file fetch times of the files fetched now.
    failures : list of str
        One message per failed source.
    """

    done: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        """Aggregate throughput (MB/s) over the files fetched now (per-file times summed)."""
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster metadata."""
        out = asdict(self)
        out["mb_per_s"] = round(self.mb_per_s, 2)
        out["failures"] = "; ".join(self.failures)
        return out

    def __str__(self) -> str:
        return (
            f"{self.done} fetched, {self.skipped} already complete, {self.failed} failed; "
            f"{self.bytes / 1e6:.1f} MB at {self.mb_per_s:.1f} MB/s"
        )


def summarise(results: Iterable[FetchResult | BaseException]) -> RunSummary:
    """Summarise fetch results; exceptions (e.g. `FetchError`) in ``results`` count as failures."""
    summary = RunSummary()
    for item in results:
        if isinstance(item, BaseException):
            summary.failed += 1
            summary.attempts += getattr(item, "attempts", 0) if isinstance(item, FetchError) else 0
            summary.failures.append(str(item))
        elif item.skipped:
            summary.skipped += 1
        else:
            summary.done += 1
            summary.bytes += item.bytes
            summary.seconds += item.seconds
            summary.attempts += item.attempts
    return summary
