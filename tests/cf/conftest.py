"""Fixtures for the CF output tests."""

from __future__ import annotations

from tests.regrid.conftest import sample_data  # noqa: F401  (the same sample files)
