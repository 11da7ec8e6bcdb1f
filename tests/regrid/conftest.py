"""Fixtures for the regridding tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_data() -> Path:
    import iris_sample_data

    return Path(iris_sample_data.__file__).parent / "sample_data"
