"""Fixtures for the format tests: the real sample files of iris-sample-data (PP, GRIB2, netCDF)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """iris-sample-data's folder (a PyPI package, installed with the project: no download)."""
    import iris_sample_data

    return Path(iris_sample_data.__file__).parent / "sample_data"
