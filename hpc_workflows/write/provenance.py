"""Provenance attributes recorded in every output file."""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # add_provenance is given a dataset; provenance_attrs needs no xarray (~0.13 s)
    import xarray as xr

__all__ = ["add_provenance", "provenance_attrs"]


def provenance_attrs(
    attrs: Mapping[str, Any],
    *,
    sources: Iterable[Mapping[str, object]] = (),
    extra: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """Return ``attrs`` with CF ``history`` and ``hpc_workflows_*`` provenance added.

    Parameters
    ----------
    attrs
        The file's global attributes so far (not modified).
    sources
        One mapping per input file, e.g. ``{"url": ..., "sha256": ...}``; recorded as
        ``hpc_workflows_sources`` lines ``<url> sha256:<hex>``.
    extra
        Further attributes (method, weights hash, ...), written as ``hpc_workflows_<key>``
        unless the key already has that prefix.

    Returns
    -------
    dict
        The new global attributes.
    """
    from hpc_workflows import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = dict(attrs)
    out["Conventions"] = "CF-1.8"
    line = f"{now}: written by hpc_workflows {__version__} (python {platform.python_version()})"
    out["history"] = f"{line}\n{out['history']}" if out.get("history") else line
    out["hpc_workflows_version"] = __version__
    out["hpc_workflows_created"] = now
    lines = []
    for src in sources:
        url = src.get("url") or src.get("path") or "?"
        digest = src.get("sha256")
        lines.append(f"{url} sha256:{digest}" if digest else str(url))
    if lines:
        out["hpc_workflows_sources"] = "\n".join(lines)
    for key, value in (extra or {}).items():
        name = key if key.startswith("hpc_workflows_") else f"hpc_workflows_{key}"
        out[name] = value if isinstance(value, (str, int, float)) else str(value)
    return out


def add_provenance(
    ds: xr.Dataset,
    *,
    sources: Iterable[Mapping[str, object]] = (),
    extra: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """Return a shallow copy of ``ds`` with :func:`provenance_attrs` as its attributes."""
    out = ds.copy()
    out.attrs = provenance_attrs(ds.attrs, sources=sources, extra=extra)
    return out
