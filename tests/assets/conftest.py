"""A small daily dataset on the local filesystem: source files, dataset file, instance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import yaml

DAYS = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(6)]


def write_source_day(folder: Path, day: dt.date) -> Path:
    """One day's source file: 4 six-hourly steps of an analytic field on a 1-degree grid."""
    import pandas as pd
    import xarray as xr

    lat = np.arange(40.5, 60.0, 1.0)
    lon = np.arange(-9.5, 10.0, 1.0)
    times = pd.date_range(str(day), periods=4, freq="6h")
    base = 280 + 10 * np.cos(np.deg2rad(lat))[:, None] + 0.1 * lon[None, :]
    data = np.stack([base + i + day.day for i in range(len(times))]).astype("f4")
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), data, {"units": "K", "standard_name": "air_temperature"})},
        coords={"time": times, "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
                "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"})},
        attrs={"Conventions": "CF-1.8"},
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day:%Y%m%d}.nc"
    ds.to_netcdf(path)
    return path


def dataset_doc(tmp: Path, **override) -> dict:
    doc = {
        "partitioning": {"period": "daily", "start": str(DAYS[0]), "end": str(DAYS[-1])},
        "source": {"template": str(tmp / "src" / "{dt:%Y%m%d}.nc")},
        "regrid": {"method": "conservative",
                   "target": {"kind": "regional", "lat": [42.0, 58.0], "lon": [-8.0, 8.0], "resolution": 2.0},
                   "weights_dir": str(tmp / "weights")},
        "output": {"directory": str(tmp / "out"), "name": "tas2deg", "workdir": str(tmp / "work")},
    }
    doc.update(override)
    return doc


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """configs/datasets-like folder with one good dataset (tas_daily); source days 1, 2, 4, 5, 6."""
    folder = tmp_path / "datasets"
    folder.mkdir()
    (folder / "tas_daily.yaml").write_text(yaml.safe_dump(dataset_doc(tmp_path)))
    for day in DAYS:
        if day.day != 3:  # day 3 is late on the archive
            write_source_day(tmp_path / "src", day)
    return folder
