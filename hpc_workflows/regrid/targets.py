"""Target grids: always 1-D latitude/longitude with cell bounds.

Accepted specifications (see :func:`parse_target_grid`):

- ``"global_1deg"``, ``"global_0.25deg"``, ``"global_<r>deg"``: global grid of ``r`` degree
  cells with edges on multiples of ``r`` from -90 and 0, so centres are -89.5..89.5 and
  0.5..359.5 for 1 degree (not CDO's ``r360x180``, which puts centres at 0..359).
- ``{"kind": "global", "resolution": r}``: the same as a dict.
- ``{"kind": "regional", "lat": [s, n], "lon": [w, e], "resolution": r}``: ``s, n, w, e`` are
  the outer *edges* of the domain; centres are ``s + r/2 .. n - r/2``. ``w`` may be
  negative (-180..180 convention) and ``e < w`` means the domain crosses 0/360 the short way
  round is not assumed: give ``e > w`` (e.g. ``[350, 370]``).
- ``{"kind": "explicit", "lat": [...], "lon": [...]}``: cell centres (either latitude
  order); bounds are midpoints, outer edges half a spacing out, latitude clipped to +-90.
  Optional ``"lat_bnds"``/``"lon_bnds"`` ((n, 2) lists) override the derived ones.
- ``{"kind": "file", "path": "grid.nc"}``: the lat/lon grid of a template netCDF file
  (first variable with a latitude/longitude grid, or ``"variable": name``), using its
  bounds when present.

Datum: a target grid is on WGS84 (EPSG:4326) unless it declares another, which only a
template file can do, with a CF ``latitude_longitude`` grid mapping that names a datum or
ellipsoid (``crs_wkt``, ``horizontal_datum_name``, ``semi_major_axis`` ...). Projected
sources are placed on the target's datum (see :mod:`hpc_workflows.regrid.grids`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpc_workflows.regrid.errors import GridError
from hpc_workflows.regrid.grids import WGS84, derive_bounds

__all__ = ["TargetGrid", "parse_target_grid", "VALID_TARGET_FORMS"]

VALID_TARGET_FORMS = (
    '"global_1deg", "global_0.25deg" (any "global_<r>deg"), '
    '{"kind": "global", "resolution": r}, '
    '{"kind": "regional", "lat": [s, n], "lon": [w, e], "resolution": r}, '
    '{"kind": "explicit", "lat": [...], "lon": [...]}, '
    '{"kind": "file", "path": "grid.nc"}'
)

_GLOBAL_RE = re.compile(r"^global_(\d+(?:\.\d+)?)deg$")


@dataclass(frozen=True, eq=False)
class TargetGrid:
    """A 1-D latitude/longitude target grid with cell edges.

    Attributes
    ----------
    lat, lon
        Cell centres in degrees (latitude ascending or descending as specified).
    lat_bnds, lon_bnds
        (n, 2) cell edges.
    spec
        Human-readable description of where the grid came from (kept in output attrs).
    geodetic
        Geodetic CRS of the latitude/longitude (``"EPSG:4326"``, or the WKT a template
        file declared).
    """

    lat: np.ndarray
    lon: np.ndarray
    lat_bnds: np.ndarray
    lon_bnds: np.ndarray
    spec: str = ""
    geodetic: str = WGS84
    _hash: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        # An invalid grid must be refused here: NaN bounds otherwise give no overlap with
        # anything, and the user is told the grids do not overlap.
        for name, arr, shape in (("lat", self.lat, (self.lat.size,)),
                                 ("lon", self.lon, (self.lon.size,)),
                                 ("lat_bnds", self.lat_bnds, (self.lat.size, 2)),
                                 ("lon_bnds", self.lon_bnds, (self.lon.size, 2))):
            a = np.asarray(arr)
            if a.shape != shape:
                per_cell = "pair of edges" if "bnds" in name else "centre"
                raise GridError(f"target grid ({self.spec}) is invalid: {name} has shape "
                                f"{a.shape}, expected {shape} (one {per_cell} per cell)")
            bad = ~np.isfinite(a.astype(np.float64))
            if bad.any():
                cells = np.unique(np.nonzero(bad)[0])
                raise GridError(
                    f"target grid ({self.spec}) is invalid: {name} has {int(bad.sum())} "
                    f"missing (NaN) or infinite values (cells {cells[:5].tolist()}"
                    f"{' ...' if cells.size > 5 else ''}); give finite values, or remove the "
                    "bounds so they are derived from the cell centres")
        if np.any(np.abs(self.lat_bnds) > 90.0 + 1e-9):
            raise GridError(f"target grid ({self.spec}) is invalid: lat_bnds outside "
                            "[-90, 90]")

    @property
    def shape(self) -> tuple[int, int]:
        """(nlat, nlon)."""
        return (self.lat.size, self.lon.size)

    @property
    def kind(self) -> str:
        """Always ``"latlon"`` (so a target can serve as a source grid description)."""
        return "latlon"

    def grid_hash(self) -> str:
        """SHA-256 over centres and bounds (and the datum, when it is not WGS84)."""
        if not self._hash:
            h = hashlib.sha256(b"latlon")
            for arr in (self.lat, self.lon, self.lat_bnds, self.lon_bnds, None, None):
                h.update(b"|")
                if arr is not None:
                    a = np.ascontiguousarray(arr, dtype=np.float64)
                    h.update(str(a.shape).encode())
                    h.update(a.tobytes())
            if self.geodetic != WGS84:  # WGS84 targets keep the hashes they always had
                h.update(b"|geodetic:" + self.geodetic.encode())
            self._hash.append(h.hexdigest())
        return self._hash[0]


def _regular(start: float, stop: float, res: float, what: str, spec: Any) -> np.ndarray:
    if not res > 0:
        raise GridError(f"target grid {spec!r}: resolution must be > 0, got {res!r}")
    n = (stop - start) / res
    if n < 1 or abs(n - round(n)) > 1e-6:
        raise GridError(f"target grid {spec!r}: {what} extent {start}..{stop} is not a whole "
                        f"number of {res} degree cells")
    edges = start + res * np.arange(round(n) + 1, dtype=np.float64)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def _from_edges(lat_b: np.ndarray, lon_b: np.ndarray, spec: str) -> TargetGrid:
    return TargetGrid(lat_b.mean(axis=1), lon_b.mean(axis=1), lat_b, lon_b, spec)


def _global(res: float, spec: Any) -> TargetGrid:
    return _from_edges(_regular(-90.0, 90.0, res, "latitude", spec),
                       _regular(0.0, 360.0, res, "longitude", spec), f"global {res} degree")


def _as_float(value: Any, name: str, spec: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise GridError(f"target grid {spec!r}: {name!r} must be a number, got {value!r}") from None


def parse_target_grid(spec: str | dict[str, Any]) -> TargetGrid:
    """Build a :class:`TargetGrid` from a config value.

    Parameters
    ----------
    spec
        One of the forms listed in :data:`VALID_TARGET_FORMS` (see the module docstring).

    Returns
    -------
    TargetGrid

    Raises
    ------
    ValueError
        (:class:`~hpc_workflows.regrid.errors.GridError`) naming the spec and listing the
        valid forms when the spec is not understood.
    """
    if isinstance(spec, TargetGrid):
        return spec
    if isinstance(spec, str):
        m = _GLOBAL_RE.match(spec.strip())
        if m:
            return _global(float(m.group(1)), spec)
        if spec.strip().endswith(".nc"):
            return _from_file({"kind": "file", "path": spec.strip()})
        raise GridError(f"unknown target grid {spec!r}; valid forms: {VALID_TARGET_FORMS}")
    if not isinstance(spec, dict):
        raise GridError(f"unknown target grid {spec!r} (type {type(spec).__name__}); "
                        f"valid forms: {VALID_TARGET_FORMS}")
    kind = spec.get("kind")
    if kind == "global":
        if "resolution" not in spec:
            raise GridError(f"target grid {spec!r}: missing 'resolution'")
        return _global(_as_float(spec["resolution"], "resolution", spec), spec)
    if kind == "regional":
        missing = [k for k in ("lat", "lon", "resolution") if k not in spec]
        if missing:
            raise GridError(f"target grid {spec!r}: missing {missing}; valid forms: "
                            f"{VALID_TARGET_FORMS}")
        res = _as_float(spec["resolution"], "resolution", spec)
        try:
            s, n = (float(v) for v in spec["lat"])
            w, e = (float(v) for v in spec["lon"])
        except (TypeError, ValueError):
            raise GridError(f"target grid {spec!r}: 'lat' and 'lon' must be [low, high] pairs"
                            ) from None
        if not (-90.0 <= s < n <= 90.0):
            raise GridError(f"target grid {spec!r}: 'lat' must satisfy -90 <= s < n <= 90")
        if not (w < e <= w + 360.0):
            raise GridError(f"target grid {spec!r}: 'lon' must satisfy w < e <= w + 360")
        return _from_edges(_regular(s, n, res, "latitude", spec),
                           _regular(w, e, res, "longitude", spec),
                           f"regional lat {s}..{n} lon {w}..{e} at {res} degree")
    if kind == "explicit":
        missing = [k for k in ("lat", "lon") if k not in spec]
        if missing:
            raise GridError(f"target grid {spec!r}: missing {missing}")
        lat = np.asarray(spec["lat"], dtype=np.float64)
        lon = np.asarray(spec["lon"], dtype=np.float64)
        for name, arr in (("lat", lat), ("lon", lon)):
            if arr.ndim != 1 or arr.size < 1:
                raise GridError(f"target grid {spec!r}: {name!r} must be a 1-D list of centres")
            if arr.size > 1 and not (np.all(np.diff(arr) > 0) or np.all(np.diff(arr) < 0)):
                hint = (" (a grid crossing 0/360 can use -180..180 or values above 360, "
                        "e.g. [350, 355, 360, 365])" if name == "lon" else "")
                raise GridError(f"target grid {spec!r}: {name!r} must be strictly "
                                f"monotonic{hint}")
        if np.any(np.abs(lat) > 90):
            raise GridError(f"target grid {spec!r}: 'lat' values must be within [-90, 90]")
        lat_b = (np.asarray(spec["lat_bnds"], dtype=np.float64) if "lat_bnds" in spec
                 else derive_bounds(lat, clip=(-90.0, 90.0)))
        lon_b = (np.asarray(spec["lon_bnds"], dtype=np.float64) if "lon_bnds" in spec
                 else derive_bounds(lon))
        return TargetGrid(lat, lon, lat_b, lon_b, f"explicit {lat.size}x{lon.size}")
    if kind == "file":
        return _from_file(spec)
    raise GridError(f"unknown target grid {spec!r}; valid forms: {VALID_TARGET_FORMS}")


def _from_file(spec: dict[str, Any]) -> TargetGrid:
    import xarray as xr

    from hpc_workflows.regrid.grids import read_source_grid

    if "path" not in spec:
        raise GridError(f"target grid {spec!r}: missing 'path'")
    path = Path(str(spec["path"])).expanduser()
    if not path.is_file():
        raise GridError(f"target grid file {str(path)!r} does not exist")
    with xr.open_dataset(path, decode_times=False) as ds:
        names = [spec["variable"]] if spec.get("variable") else [
            str(v) for v in ds.data_vars if ds[v].ndim >= 2]
        errors = []
        for name in names:
            try:
                grid = read_source_grid(ds, name)
            except GridError as exc:
                errors.append(str(exc))
                continue
            if grid.kind != "latlon":
                errors.append(f"variable {name!r} is on a {grid.kind} grid")
                continue
            return TargetGrid(grid.lat, grid.lon, grid.lat_bnds, grid.lon_bnds,
                              f"file {path.name}", _declared_datum(ds, name, path))
    raise GridError(f"target grid file {str(path)!r}: no variable on a 1-D latitude/longitude "
                    f"grid found ({'; '.join(errors) or 'no 2-D variables'})")


def _declared_datum(ds: Any, name: str, path: Path) -> str:
    """WKT of the datum a template's ``latitude_longitude`` grid mapping declares, or WGS84.

    A grid mapping without datum or ellipsoid parameters declares nothing (CF leaves the
    datum unspecified), so the default applies.
    """
    gm_name = str(ds[name].attrs.get("grid_mapping", "")).split(":")[0].strip()
    if not gm_name or gm_name not in ds.variables:
        return WGS84
    attrs = dict(ds[gm_name].attrs)
    declares = ("crs_wkt", "spatial_ref", "horizontal_datum_name", "reference_ellipsoid_name",
                "semi_major_axis", "earth_radius", "inverse_flattening", "towgs84")
    if not any(k in attrs for k in declares):
        return WGS84
    import pyproj

    try:
        crs = pyproj.CRS.from_cf(attrs)
    except Exception as exc:  # pyproj raises several types for bad CF attributes
        raise GridError(f"target grid file {str(path)!r}: grid_mapping {gm_name!r} cannot be "
                        f"turned into a CRS ({exc}); fix or remove its datum attributes"
                        ) from exc
    if not crs.is_geographic:
        raise GridError(f"target grid file {str(path)!r}: grid_mapping {gm_name!r} is not a "
                        "latitude_longitude mapping; a target grid must be latitude/longitude")
    geodetic = crs.geodetic_crs
    return WGS84 if geodetic.to_epsg(min_confidence=70) == 4326 else \
        geodetic.to_wkt()
