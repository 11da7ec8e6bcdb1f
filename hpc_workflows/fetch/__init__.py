"""Fetch: robust, resumable, verified retrieval over HTTP(S), filesystems and archive commands.

Plain Python (no Dagster): plan sources, fetch each atomically with retries, unpack, merge.
"""

from hpc_workflows.fetch.errors import FetchError
from hpc_workflows.fetch.fetcher import FetchResult, fetch
from hpc_workflows.fetch.merge import merge_daily
from hpc_workflows.fetch.plan import parse_step, plan_sources, read_manifest
from hpc_workflows.fetch.settings import FetchSettings
from hpc_workflows.fetch.source import Source
from hpc_workflows.fetch.summary import RunSummary, summarise
from hpc_workflows.fetch.unpack import remove_workdir, unpack
from hpc_workflows.fetch.verify import sha256_file

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
