"""Package attributes imported on first use (PEP 562), so that importing a light part of a
package (the netCDF4-only regridder, say) does not import xarray and dask with it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    Parameters
    ----------
    package
        The package's ``__name__`` (for the error message).
    exports
        Attribute name -> module that defines it.

    Examples
    --------
    >>> __getattr__, __dir__, __all__ = lazy_exports(__name__, {"regrid": "pkg.api"})
    """
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__, names
