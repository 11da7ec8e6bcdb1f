"""Let dask measure Dagster's records without a warning per step.

A worker measures each result it holds with ``dask.sizeof``. A step's result is a list of
``DagsterEvent``s, which like every Dagster ``@record`` is a tuple whose ``__iter__`` raises;
dask's tuple handler iterates, fails, and logs "Sizeof calculation for object of type 'list'
failed" (and 'dict') two or three times per step into every worker log. Here tuples that refuse
iteration are measured through ``tuple.__iter__``, which they cannot override.
"""

from __future__ import annotations

import sys

from dask.sizeof import sizeof

__all__ = ["register_record_sizeof"]

_registered = False


def register_record_sizeof() -> None:
    """Make ``dask.sizeof`` handle Dagster records (idempotent; call in each worker process)."""
    global _registered
    if _registered:
        return
    default = sizeof.dispatch(tuple)

    @sizeof.register(tuple)
    def _sizeof_tuple(obj: tuple) -> int:
        try:
            return default(obj)
        except Exception:  # noqa: BLE001 - a @record's banned __iter__ raises plain Exception
            return sys.getsizeof(obj) + sum(sizeof(item) for item in tuple.__iter__(obj))

    _registered = True
