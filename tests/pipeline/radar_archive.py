"""A small, realistic radar archive for end-to-end tests of the archive workflow.

Like the UK 1 km radar composites the project grew out of: one tar per day in a (stand-in)
tape archive, holding one gzipped netCDF per 5 minutes and product, on the British National
Grid (EPSG:27700). Here the grid is 5 km and the day only a few hours long, so the test is
quick, but every step (archive client, untar, member selection, gunzip, merge, 3-hourly sums,
projected → lat/lon aggregation) is the real one.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import xarray as xr

NX, NY, DX = 60, 80, 5000.0  # 300 km x 400 km at 5 km
X0, Y0 = 200_000.0, 100_000.0  # south-west corner (metres, BNG)
STEP_MINUTES = 5
HOURS_PER_DAY = 6

BNG_MAPPING_ATTRS = {
    "grid_mapping_name": "transverse_mercator",
    "longitude_of_central_meridian": -2.0,
    "latitude_of_projection_origin": 49.0,
    "scale_factor_at_central_meridian": 0.9996012717,
    "false_easting": 400000.0,
    "false_northing": -100000.0,
    "semi_major_axis": 6377563.396,
    "semi_minor_axis": 6356256.909,
}


def x_centres() -> np.ndarray:
    return X0 + DX * (np.arange(NX) + 0.5)


def y_centres() -> np.ndarray:
    return Y0 + DX * (np.arange(NY) + 0.5)


def rain_rate(when: dt.datetime) -> np.ndarray:
    """A deterministic rain field (mm/h) with dry areas, light and heavy rain, and some NaN."""
    minutes = (when - dt.datetime(2020, 2, 14)).total_seconds() / 60.0
    x = np.linspace(0, 1, NX)[None, :]
    y = np.linspace(0, 1, NY)[:, None]
    field = 12.0 * np.exp(-(((x - 0.3 - minutes / 3000.0) ** 2) + (y - 0.6) ** 2) / 0.02)
    field = field + 1.5 * (np.sin(8 * x + minutes / 60.0) * np.cos(6 * y) > 0.4)
    field = np.where(field < 0.05, 0.0, field).astype("float32")
    field[:4, :4] = np.nan  # outside radar coverage
    return field


def composite(when: dt.datetime, product: str) -> xr.Dataset:
    data = rain_rate(when) if product == "rainrate_composite" else np.full((NY, NX), 1.0, "float32")
    name = "rainfall_rate" if product == "rainrate_composite" else "quality"
    ds = xr.Dataset(
        {
            name: (("time", "projection_y_coordinate", "projection_x_coordinate"), data[None],
                   {"units": "mm h-1" if name == "rainfall_rate" else "1",
                    "long_name": name.replace("_", " "),
                    "grid_mapping": "transverse_mercator"}),
            "transverse_mercator": ((), np.int32(0), BNG_MAPPING_ATTRS),
        },
        coords={
            "time": ("time", [np.datetime64(when, "ns")]),
            "projection_x_coordinate": ("projection_x_coordinate", x_centres(),
                                        {"standard_name": "projection_x_coordinate", "units": "m"}),
            "projection_y_coordinate": ("projection_y_coordinate", y_centres(),
                                        {"standard_name": "projection_y_coordinate", "units": "m"}),
        },
        attrs={"Conventions": "CF-1.7", "source": "synthetic radar composite for tests"},
    )
    if name == "rainfall_rate":
        ds[name].attrs["standard_name"] = "rainfall_rate"
        ds[name].attrs["units"] = "mm h-1"
    return ds


def times_of_day(day: dt.date) -> list[dt.datetime]:
    start = dt.datetime(day.year, day.month, day.day)
    return [start + dt.timedelta(minutes=STEP_MINUTES * i)
            for i in range(HOURS_PER_DAY * 60 // STEP_MINUTES)]


def write_day_archive(root: Path, day: dt.date) -> Path:
    """Write ``<root>/radar/YYYYMMDD.tar`` with gzipped 5-minute composites of two products."""
    out = root / "radar" / f"{day:%Y%m%d}.tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        for when in times_of_day(day):
            for product in ("rainrate_composite", "qualityproduct_composite"):
                raw = composite(when, product).to_netcdf()
                blob = gzip.compress(bytes(raw))
                info = tarfile.TarInfo(f"{when:%Y%m%d%H%M}_uk_{product}.nc.gz")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    return out


# --- the same archive in the format the real one holds: gzipped NIMROD files --------------

NIMROD_SCALE = 32.0  # the UK composite stores rain rate x 32 as int16 ("mm/h*32")


def nimrod_rain_rate(when: dt.datetime) -> np.ndarray:
    """:func:`rain_rate` as it reads back from NIMROD: quantised to 1/32 mm/h, NaN kept."""
    rate = rain_rate(when)
    return np.where(np.isnan(rate), np.nan, np.round(rate * NIMROD_SCALE) / NIMROD_SCALE)


def nimrod_composite(when: dt.datetime, product: str) -> bytes:
    """One 5-minute NIMROD field on this module's grid (rows from the top, -1 = no cover)."""
    from tests.formats.nimrod_files import nimrod_bytes

    rate = rain_rate(when) if product == "rainrate_composite" else np.ones((NY, NX), "float32")
    stored = np.where(np.isnan(rate), -1, np.round(rate * NIMROD_SCALE)).astype("int16")[::-1]
    return nimrod_bytes(
        stored, validity=when, x_origin=float(x_centres()[0]), y_origin=float(y_centres()[-1]),
        step=DX, field_code=213 if product == "rainrate_composite" else 214,
        title="Rainfall rate Composite" if product == "rainrate_composite" else "Quality",
    )


def write_nimrod_day_archive(root: Path, day: dt.date) -> Path:
    """Write ``<root>/radar/YYYYMMDD.tar`` of gzipped 5-minute NIMROD files, two products,
    named as the real archive names them (no format in the name: it is found from content)."""
    out = root / "radar" / f"{day:%Y%m%d}.tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        for when in times_of_day(day):
            for product in ("rainrate_composite", "qualityproduct_composite"):
                blob = gzip.compress(nimrod_composite(when, product))
                info = tarfile.TarInfo(f"metoffice-c-band-{product}_{when:%Y%m%d%H%M}_1km-composite.dat.gz")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    return out
