"""Has a period's source file appeared yet? (file exists / HTTP HEAD / an archive listing)

Plain Python used by each dataset's new-data sensor, which waits for the newest periods' files
and gives up after ``arrival.give_up_after``, as a Cylc xtrigger does. ``None`` means "cannot
tell without fetching" (an archive source without a listing command): such a file is treated
as present once its period has ended.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hpc_workflows.datasets.spec import DatasetSpec
from hpc_workflows.fetch import Source

__all__ = ["available"]


def available(spec: DatasetSpec, source: Source, timeout: float = 20.0) -> bool | None:
    """Whether ``source`` can be fetched now: True, False, or None when it cannot be told."""
    url = source.url
    transport = spec.workflow.source.transport
    if transport == "command":
        if not spec.arrival.command:
            return None
        argv = [a.replace("{src}", url) for a in spec.arrival.command]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.returncode == 0
    lower = url.lower()
    if lower.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.head(url, follow_redirects=True, timeout=timeout)
        except httpx.HTTPError:
            return None  # the server did not answer: say nothing rather than give up early
        if response.status_code in (404, 410):
            return False
        return True if response.status_code < 400 else None
    if lower.startswith("file://"):
        from hpc_workflows.fetch.filesystem import local_path

        return local_path(url).exists()
    if "://" not in url:
        return Path(url).expanduser().exists()
    return None
