"""Time aggregation (plain Python, no Dagster).

:func:`resample_time` / :func:`aggregate_windows` reduce time steps window by window and count what
each window got; :func:`open_with_neighbours` adds the steps of neighbouring files that a
file's windows need. The rules are one :class:`TimeAggregation` value; docs/time.md has the
conventions. Attributes are resolved lazily so that the run configuration can validate a
:class:`TimeAggregation` without importing xarray.
"""

from __future__ import annotations

from hpc_workflows.lazy_exports import lazy_exports

_EXPORTS = {
    "TimeAggregation": "hpc_workflows.temporal.rules",
    "aggregate_windows": "hpc_workflows.temporal.aggregate",
    "resample_time": "hpc_workflows.temporal.aggregate",
    "INCOMPLETE_ATTR": "hpc_workflows.temporal.aggregate",
    "Windows": "hpc_workflows.temporal.windows",
    "plan_windows": "hpc_workflows.temporal.windows",
    "open_with_neighbours": "hpc_workflows.temporal.neighbours",
    "WithNeighbours": "hpc_workflows.temporal.neighbours",
    "plan_neighbours": "hpc_workflows.temporal.neighbours",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
