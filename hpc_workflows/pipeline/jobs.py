"""The ``fetch_and_regrid`` graph and job.

The graph carries a config mapping: the user writes one ``WorkflowConfig`` under
``ops: {fetch_and_regrid: {config: ...}}`` and the mapping validates it when the run is
created (before any step, and before any batch job is queued), then hands it to every op.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigMapping, DagsterInvalidConfigError, graph

from hpc_workflows.config import ConfigValidationError, WorkflowConfig, validate_workflow_config
from hpc_workflows.pipeline.ops import (
    fetch_batch_op,
    plan_sources_op,
    process_batch_op,
    regrid_batch_op,
    summarise_op,
)

__all__ = ["fetch_and_regrid_graph", "OP_NAMES"]

OP_NAMES = ("plan_sources", "process_batch", "fetch_batch", "regrid_batch", "summarise")


def _map_config(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        cfg = validate_workflow_config(raw)
    except ConfigValidationError as exc:
        # A DagsterError passes through Dagster's user-code boundary unwrapped, so the CLI and
        # the UI show our message, which names the field and the fix.
        raise DagsterInvalidConfigError(str(exc), [], raw) from None
    as_dict = cfg.model_dump(exclude_none=True)
    return {name: {"config": as_dict} for name in OP_NAMES}


workflow_config_mapping = ConfigMapping(
    config_fn=_map_config,
    config_schema=WorkflowConfig.to_config_schema(),
)


@graph(name="fetch_and_regrid_graph", config=workflow_config_mapping)
def fetch_and_regrid_graph():
    """Plan (skip what the ledger finds complete) → one step per batch of files → summary.

    With a ``fetch`` worker pool, two steps per batch: fetch (data movers) → regrid (compute).
    """
    batches, fetch_batches, plan = plan_sources_op()
    written = batches.map(process_batch_op)
    regridded = fetch_batches.map(fetch_batch_op).map(regrid_batch_op)
    summarise_op(plan, written.collect(), regridded.collect())
