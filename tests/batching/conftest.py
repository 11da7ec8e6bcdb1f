"""Small real netCDF sources on the local filesystem and a BatchJob over them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hpc_workflows.batching import BatchJob
from hpc_workflows.fetch import FetchSettings, Source
from hpc_workflows.preprocess import PreprocessSettings


def write_day(path: Path, day: int) -> None:
    """A one-step 2-degree global field, different each day."""
    import xarray as xr

    lat = np.arange(-89.0, 90.0, 2.0)
    lon = np.arange(1.0, 360.0, 2.0)
    la = np.radians(lat)[:, None]
    data = (280 + 20 * np.cos(la) + day + 0 * lon[None, :]).astype("float32")[None]
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), data, {"standard_name": "air_temperature", "units": "K"})},
        coords={"time": [np.datetime64("2020-01-01") + np.timedelta64(day, "D")],
                "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
                "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"})},
    )
    ds.to_netcdf(path)


def make_sources(folder: Path, n: int, *, missing: tuple[int, ...] = ()) -> list[Source]:
    """``n`` daily sources; the files of the days in ``missing`` are not written."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for day in range(n):
        t = datetime(2020, 1, 1) + timedelta(days=day)
        path = folder / f"{t:%Y%m%d}.nc"
        if day not in missing:
            write_day(path, day)
        sources.append(Source(key=f"{t:%Y%m%d}", url=str(path), time=t))
    return sources


def make_job(tmp: Path, *, files_in_flight: int = 2, keep_scratch: bool = False,
             target: str = "global_10deg") -> BatchJob:
    return BatchJob(
        fetch=FetchSettings(retries=0),
        preprocess=PreprocessSettings(target=target, method="conservative",
                                      weights_dir=str(tmp / "weights")),
        output_dir=tmp / "out",
        output_name="tas",
        workdir=tmp / "scratch",
        files_in_flight=files_in_flight,
        keep_scratch=keep_scratch,
    )


@pytest.fixture
def sources(tmp_path):
    return make_sources(tmp_path / "archive", 6)
