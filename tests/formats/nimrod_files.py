"""Spec-conformant NIMROD files for tests, and an independent numpy reading of their headers.

The layout is the published NIMROD format (Met Office, "Met Office Rain Radar Data from the
NIMROD System", BADC): each field is two big-endian Fortran records, a 512-byte header of
31 int16, 28 float32, 45 float32, 56 characters and 51 int16, then the data (rows from the
top-left corner). Values here are those of the UK 1 km rain-rate composite (field code 213,
units ``mm/h*32``: stored as int16 rain rate times 32, -1 where there is no radar cover).

:func:`read_nimrod` parses a file with a numpy structured dtype, independently of iris, so
tests can compare what our conversion wrote against a second reading of the same bytes.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np

MISSING = -32767  # NIMROD's "not set" for header fields

_GENERAL_INT16 = (
    "vt_year vt_month vt_day vt_hour vt_minute vt_second dt_year dt_month dt_day dt_hour "
    "dt_minute datum_type datum_len experiment_num horizontal_grid_type num_rows num_cols "
    "nimrod_version field_code vertical_coord_type reference_vertical_coord_type "
    "data_specific_float32_len data_specific_int16_len origin_corner int_mdi period_minutes "
    "num_model_levels proj_biaxial_ellipsoid ensemble_member model_origin_id averagingtype"
).split()
_GENERAL_FLOAT32 = (
    "vertical_coord reference_vertical_coord y_origin row_step x_origin column_step "
    "float32_mdi MKS_data_scaling data_offset x_offset y_offset true_origin_latitude "
    "true_origin_longitude true_origin_easting true_origin_northing tm_meridian_scaling "
    "threshold_value_alt threshold_value"
).split()

HEADER_DTYPE = np.dtype(
    [("lead", ">i4")]
    + [(n, ">i2") for n in _GENERAL_INT16]
    + [(n, ">f4") for n in _GENERAL_FLOAT32]
    + [("general_float32_spare", ">f4", (28 - len(_GENERAL_FLOAT32),))]
    + [("data_float32", ">f4", (45,))]
    + [("units", "S8"), ("source", "S24"), ("title", "S24")]
    + [("data_int16", ">i2", (51,))]
    + [("trail", ">i4")]
)
assert HEADER_DTYPE.itemsize == 4 + 512 + 4


def nimrod_bytes(
    data: np.ndarray,
    *,
    validity: dt.datetime,
    reference: dt.datetime | None = None,
    x_origin: float = -404500.0,
    y_origin: float = 1549500.0,
    step: float = 1000.0,
    units: str = "mm/h*32",
    field_code: int = 213,
    int_mdi: int = -1,
    period_minutes: int = 5,
    title: str = "Rainfall rate Composite",
) -> bytes:
    """One NIMROD field (header and data records) on the British National Grid.

    Parameters
    ----------
    data : ndarray of int16, shape (rows, cols)
        Values from the top-left corner, row by row (NIMROD's origin_corner 0).
    validity, reference
        Validity time and data (forecast reference) time; ``reference`` defaults to validity.
    x_origin, y_origin
        Easting of the first column and northing of the top row (cell centres), metres.
    """
    data = np.asarray(data, dtype=">i2")
    rows, cols = data.shape
    reference = reference or validity
    h = np.zeros((), HEADER_DTYPE)
    for name in _GENERAL_INT16:
        h[name] = MISSING
    for name in _GENERAL_FLOAT32:
        h[name] = MISSING
    h["general_float32_spare"] = MISSING
    h["data_float32"] = MISSING
    h["data_int16"] = MISSING
    h["lead"] = h["trail"] = 512
    for prefix, t in (("vt", validity), ("dt", reference)):
        for part in ("year", "month", "day", "hour", "minute"):
            h[f"{prefix}_{part}"] = getattr(t, part)
    h["vt_second"] = validity.second
    h["datum_type"], h["datum_len"] = 1, 2  # integer, 2 bytes
    h["horizontal_grid_type"] = 0  # British National Grid
    h["num_rows"], h["num_cols"] = rows, cols
    h["nimrod_version"], h["field_code"] = 2, field_code
    h["vertical_coord_type"] = 0  # height above orography (surface)
    h["vertical_coord"] = 0.0
    h["origin_corner"] = 0  # top left
    h["int_mdi"] = int_mdi
    h["period_minutes"] = period_minutes
    h["proj_biaxial_ellipsoid"] = 0  # Airy 1830
    h["y_origin"], h["row_step"] = y_origin, step
    h["x_origin"], h["column_step"] = x_origin, step
    h["float32_mdi"] = MISSING
    h["MKS_data_scaling"], h["data_offset"] = 1.0, 0.0
    h["true_origin_latitude"], h["true_origin_longitude"] = 49.0, -2.0
    h["true_origin_easting"], h["true_origin_northing"] = 400000.0, -100000.0
    h["tm_meridian_scaling"] = 0.9996012717
    h["units"] = units.encode().ljust(8)
    h["source"] = b"ukradar".ljust(24)
    h["title"] = title.encode().ljust(24)
    length = np.array([data.nbytes], ">i4").tobytes()
    return h.tobytes() + length + data.tobytes() + length


def write_nimrod(path: Path, data: np.ndarray, *, compress: bool = False, **kwargs) -> Path:
    """Write :func:`nimrod_bytes` to ``path`` (gzip-compressed when ``compress``)."""
    raw = nimrod_bytes(data, **kwargs)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def read_nimrod(path: Path) -> dict:
    """Independent reading of a one-field NIMROD file: header fields, data and grid.

    Returns
    -------
    dict
        ``header`` (the structured record), ``data`` (float, rows south to north, NaN where
        missing, scaled per the ``*N`` units convention), ``x``, ``y`` (cell centres, metres),
        ``validity`` and ``reference`` (datetimes).
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    h = np.frombuffer(raw, HEADER_DTYPE, count=1)[0]
    rows, cols = int(h["num_rows"]), int(h["num_cols"])
    start = HEADER_DTYPE.itemsize + 4
    stored = np.frombuffer(raw, ">i2", count=rows * cols, offset=start).reshape(rows, cols)
    units = h["units"].decode().strip()
    scale = float(units.split("*")[1]) if "*" in units else 1.0
    values = np.where(stored == h["int_mdi"], np.nan, stored / scale)[::-1]  # south first
    x = float(h["x_origin"]) + float(h["column_step"]) * np.arange(cols)
    y = float(h["y_origin"]) - float(h["row_step"]) * np.arange(rows)[::-1]
    when = lambda p, s: dt.datetime(*(int(h[f"{p}_{k}"]) for k in ("year", "month", "day", "hour", "minute")), s)  # noqa: E731
    return {"header": h, "data": values, "x": x, "y": y,
            "validity": when("vt", int(h["vt_second"])), "reference": when("dt", 0)}
