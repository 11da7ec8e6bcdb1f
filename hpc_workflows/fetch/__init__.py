"""Fetch: robust, resumable, verified retrieval over HTTP(S), filesystems and archive commands.

Plain Python (no Dagster; the pipeline's ops are thin wrappers)::

    from datetime import datetime
    from pathlib import Path
    from hpc_workflows.fetch import FetchSettings, fetch, plan_sources, unpack, merge_daily

    sources = plan_sources(datetime(2020, 2, 14, 18), datetime(2020, 2, 17, 18), "24h",
                           "moose:/adhoc/projects/radar/{dt:%Y%m%d}.tar")
    settings = FetchSettings(command=["moo", "get", "-f", "{src}", "{dest}"], retries=5)
    for source in sources:
        result = fetch(source, Path("work") / source.key, settings)   # skipped if done
        files = unpack(result.path, Path("work") / source.key / "extract", ["*rainrate_composite*"])
        merge_daily(files, Path("daily") / f"rainrate_composite_{source.key}.nc")

Guarantees: a file appears under its final name only after its size and checksum were
verified (``.part`` + rename); re-runs skip complete files and resume partial HTTP downloads
with ``Range``; transient failures (dropped connections, 5xx, 429/503 with ``Retry-After``,
stalls, archive-client errors) are retried with exponential backoff and jitter; bad input
raises an error naming the source and the field.

Modules: `source` (Source), `plan` (plan_sources, read_manifest), `preflight` (checks run with
config validation), `settings` (FetchSettings), `base` (the transport interface), `transport`
(choice by scheme), `http`, `wire` (direct HTTP requests), `proxied` (through a proxy, with
httpx), `filesystem`, `command`, `fsspec_transport`, `fetcher` (fetch, FetchResult), `recall`
(fetch_batch: batched, throttled archive recalls), `verify` (checksums), `retry`, `hostlimit`
(per-host and per-client caps), `partfile`, `unpack` (with archive-bomb limits), `merge`,
`summary`, `errors`. Limits and failure behaviour: docs/fetch.md.
"""

from hpc_workflows.fetch.errors import FetchError
from hpc_workflows.fetch.fetcher import FetchResult, fetch
from hpc_workflows.fetch.settings import FetchSettings
from hpc_workflows.fetch.source import Source
from hpc_workflows.fetch.unpack import remove_workdir, unpack
from hpc_workflows.fetch.verify import sha256_file

# Imported on first use, so a process that only downloads starts about as fast as curl:
# merge_daily needs xarray and numpy (0.3 s); planning (csv, json, datetime) and run
# summaries are not needed to fetch.  (`unpack` stays eager: it is also a submodule's name.)
_LAZY = {
    "merge_daily": "hpc_workflows.fetch.merge",
    "parse_step": "hpc_workflows.fetch.plan",
    "plan_sources": "hpc_workflows.fetch.plan",
    "read_manifest": "hpc_workflows.fetch.plan",
    "RunSummary": "hpc_workflows.fetch.summary",
    "summarise": "hpc_workflows.fetch.summary",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpc_workflows.fetch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "FetchError",
    "FetchResult",
    "FetchSettings",
    "RunSummary",
    "Source",
    "fetch",
    "merge_daily",
    "parse_step",
    "plan_sources",
    "read_manifest",
    "remove_workdir",
    "sha256_file",
    "summarise",
    "unpack",
]
