"""hpc_workflows: Dagster workflows that fetch and pre-process gridded weather/climate data on HPC.

The science lives in plain modules (``fetch``, ``regrid``, ``temporal``, ``write``) that never
import Dagster; ``hpc_workflows.pipeline`` wraps them in ops and jobs and
``hpc_workflows.definitions`` holds the one ``Definitions`` object.

``dagster dev -m hpc_workflows`` and ``dagit -m hpc_workflows`` find ``defs`` here. It is loaded
lazily so that ``import hpc_workflows.regrid`` does not pay for importing Dagster.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "defs":
        from hpc_workflows.definitions import defs

        return defs
    raise AttributeError(f"module 'hpc_workflows' has no attribute {name!r}")


def __dir__() -> list[str]:
    return ["__version__", "defs"]
