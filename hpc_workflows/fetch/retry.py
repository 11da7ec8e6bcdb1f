"""Retry timing: exponential backoff with jitter, and parsing ``Retry-After``."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from datetime import datetime

    from hpc_workflows.fetch.settings import FetchSettings


def backoff_delay(retry_number: int, settings: "FetchSettings", rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``retry_number`` (1 for the first retry).

    ``min(backoff_max, backoff_initial * backoff_factor**(n-1))`` plus up to ``jitter`` of
    itself at random, so that many workers failing together do not retry together.
    """
    base = min(settings.backoff_max, settings.backoff_initial * settings.backoff_factor ** max(0, retry_number - 1))
    rng = rng or random
    return base * (1.0 + settings.jitter * rng.random())


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or HTTP-date) into seconds; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    # Imported here: an HTTP-date is rare, and email.utils with datetime is a noticeable part
    # of a download process's start-up.
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def retry_delay(retry_number: int, retry_after: float | None, settings: "FetchSettings") -> float:
    """Delay before the next attempt: the server's ``Retry-After`` (capped) when given, else backoff."""
    if retry_after is not None:
        return min(retry_after, settings.retry_after_max)
    return backoff_delay(retry_number, settings)
