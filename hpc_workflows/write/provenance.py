"""Provenance attributes recorded in every output file."""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Iterable, Mapping

import xarray as xr

__all__ = ["add_provenance"]


def add_provenance(
    ds: xr.Dataset,
    *,
    sources: Iterable[Mapping[str, object]] = (),
    extra: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """Return ``ds`` with CF ``history``/``source`` style provenance attributes added.

    Parameters
    ----------
    ds
        Dataset to annotate (not modified in place).
    sources
        One mapping per input file, e.g. ``{"url": ..., "sha256": ...}``; recorded as
        ``hpc_workflows_sources`` lines ``<url> sha256:<hex>``.
    extra
        Further attributes (method, weights hash, ...), written as ``hpc_workflows_<key>``
        unless the key already has that prefix.

    Returns
    -------
    xarray.Dataset
        A shallow copy with the attributes set.
    """
    from hpc_workflows import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = ds.copy()
    attrs = dict(out.attrs)
    attrs["Conventions"] = "CF-1.8"
    line = f"{now}: written by hpc_workflows {__version__} (python {platform.python_version()})"
    attrs["history"] = f"{line}\n{attrs['history']}" if attrs.get("history") else line
    attrs["hpc_workflows_version"] = __version__
    attrs["hpc_workflows_created"] = now
    lines = []
    for src in sources:
        url = src.get("url") or src.get("path") or "?"
        digest = src.get("sha256")
        lines.append(f"{url} sha256:{digest}" if digest else str(url))
    if lines:
        attrs["hpc_workflows_sources"] = "\n".join(lines)
    for key, value in (extra or {}).items():
        name = key if key.startswith("hpc_workflows_") else f"hpc_workflows_{key}"
        attrs[name] = value if isinstance(value, (str, int, float)) else str(value)
    out.attrs = attrs
    return out
