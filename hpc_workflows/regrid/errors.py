"""Exceptions raised by the regridding package (all are ``ValueError`` for bad input)."""

from __future__ import annotations

__all__ = ["GridError", "RegridError"]


class GridError(ValueError):
    """A grid (source or target) cannot be interpreted; the message names file and variable."""


class RegridError(ValueError):
    """Bad regridding request: unknown method, no overlap, mismatched units, ..."""
