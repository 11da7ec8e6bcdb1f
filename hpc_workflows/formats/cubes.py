"""Writing what iris read (NIMROD, PP, GRIB) as CF netCDF that merges along time.

iris already maps each format's header to CF: standard names, units, the grid mapping
(transverse_mercator on the Airy 1830 ellipsoid for the British National Grid), time with its
bounds, forecast_reference_time and forecast_period, and masked points as ``_FillValue``.
What it does not do is give a one-field file a time *dimension*: the time of a single radar
image is a scalar coordinate. A day of 288 such files then has nothing to concatenate along,
so each converted file gets a length-1 time dimension, and the coordinates that change with
time (forecast reference time and period) go along it rather than being kept from the first
file only.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable

__all__ = ["load_with_iris", "save_cubes"]

logger = logging.getLogger("hpc_workflows.formats")

# Coordinates that differ between consecutive files of one product and so must follow time.
_TIME_LIKE = ("forecast_reference_time", "forecast_period")


def load_with_iris(path: Path, loader: Callable[..., Any], label: str) -> Any:
    """Run an iris format loader on ``path`` and merge its fields into cubes.

    iris's translation warnings (units it does not know, an incomplete projection) are
    passed to the log with the file name: they describe the data, and the user should see them.

    Raises
    ------
    FormatError
        If iris cannot read the file, naming it and the format.
    """
    import iris.cube

    from hpc_workflows.formats.base import FormatError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cubes = iris.cube.CubeList(loader([str(path)])).merge()
        except Exception as exc:  # noqa: BLE001 - any reader failure is "not readable as X"
            raise FormatError(f"{path}: cannot be read as {label} ({type(exc).__name__}: {exc})") from None
    said: dict[str, int] = {}
    for w in caught:
        if "Iris" in type(w.message).__name__ or "Translation" in type(w.message).__name__:
            said[str(w.message)] = said.get(str(w.message), 0) + 1
    for message, count in said.items():  # once each: a PP file repeats them per field
        logger.warning("%s: %s%s", path.name, message, f" ({count} fields)" if count > 1 else "")
    if not cubes:
        raise FormatError(f"{path}: no {label} fields in the file")
    return cubes


def _with_time_dimension(cube: Any) -> Any:
    """``cube`` with a length-1 time dimension if its time is a scalar coordinate."""
    import iris.util

    if not cube.coords("time") or cube.coord_dims(cube.coord("time")):
        return cube  # no time (an ancillary field), or already a dimension
    extras = [n for n in _TIME_LIKE if cube.coords(n) and not cube.coord_dims(cube.coord(n))]
    return iris.util.new_axis(cube, "time", expand_extras=extras)


def save_cubes(cubes: Any, out: Path) -> None:
    """Write ``cubes`` to ``out`` as CF netCDF-4 (the caller renames it into place).

    Parameters
    ----------
    cubes : iris.cube.CubeList
        What a loader produced.
    out : Path
        File to write; replaced if it exists.
    """
    import iris.cube
    import iris.fileformats.netcdf

    # Only a file of single-time fields gets a time dimension: where some field already has
    # one (a model run's steps), a field with a scalar time is static (orography) and stays so.
    promote = not any(c.coords("time", dim_coords=True) for c in cubes)
    ready = iris.cube.CubeList(_with_time_dimension(c) if promote else c for c in cubes)
    for cube in ready:
        _add_reference_time(cube)
        _no_int64_coords(cube)
    timed = any(c.coords("time", dim_coords=True) for c in ready)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iris.fileformats.netcdf.save(
            ready, os.fspath(out),
            # An unlimited time dimension lets xarray concatenate and append along it.
            unlimited_dimensions=["time"] if timed else [],
            fill_value=[_fill_value(c.dtype) for c in ready],
        )
    _fix_cf(out)


def _fix_cf(path: Path) -> None:
    """Correct what iris 3.14's saver writes that is not CF.

    - For a polar stereographic grid iris writes the latitude of true scale as
      ``true_scale_lat``, a name CF does not have; CF readers (pyproj, cartopy, CDO, iris's
      own loader, which looks for ``standard_parallel``) then assume true scale at the pole,
      and place the GRIB sample's first point 3.3 degrees of latitude away from where ecCodes
      puts it.
    - On hybrid-height fields iris puts ``axis: Z`` on both the level number (the dimension
      coordinate) and ``level_height``; CF allows one coordinate per axis for a variable, so
      the auxiliary one loses the attribute (its ``standard_name`` still says what it is).
    - The British National Grid (NIMROD's grid type 0) is written as a transverse Mercator
      on the Airy ellipsoid, without its datum: a reader cannot tell OSGB36 from any other
      datum on that ellipsoid, and placing the grid in WGS84 needs the OSGB36 shift (~100 m).
      Its ``crs_wkt`` (EPSG:27700, which CF readers such as pyproj prefer) says it.
    """
    import netCDF4

    from hpc_workflows.netcdf_lock import NETCDF_LOCK

    with NETCDF_LOCK, netCDF4.Dataset(path, "a") as nc:
        dim_axes = {getattr(nc.variables[d], "axis", None) for d in nc.dimensions if d in nc.variables}
        for name, var in nc.variables.items():
            attrs = var.ncattrs()
            if getattr(var, "grid_mapping_name", None) == "polar_stereographic" and "true_scale_lat" in attrs:
                var.setncattr("standard_parallel", var.getncattr("true_scale_lat"))
                var.delncattr("true_scale_lat")
            if "axis" in attrs and name not in nc.dimensions and var.getncattr("axis") in dim_axes:
                var.delncattr("axis")
            if _is_british_national_grid(var) and "crs_wkt" not in attrs:
                var.setncattr("crs_wkt", _bng_wkt())


# EPSG:27700's projection and ellipsoid, as iris writes them for NIMROD grid type 0.
_BNG = {"grid_mapping_name": "transverse_mercator", "latitude_of_projection_origin": 49.0,
        "longitude_of_central_meridian": -2.0, "false_easting": 400000.0,
        "false_northing": -100000.0, "scale_factor_at_central_meridian": 0.9996012717,
        "semi_major_axis": 6377563.396, "semi_minor_axis": 6356256.909}


def _is_british_national_grid(var: Any) -> bool:
    """True for a grid-mapping variable whose parameters are the British National Grid's."""
    for key, value in _BNG.items():
        if not hasattr(var, key):
            return False
        got = var.getncattr(key)
        if isinstance(value, str):
            if got != value:
                return False
        elif abs(float(got) - value) > 1e-6 * max(1.0, abs(value)):  # iris rounds semi-minor
            return False
    return True


def _bng_wkt() -> str:
    import pyproj

    return pyproj.CRS.from_epsg(27700).to_wkt()


def _add_reference_time(cube: Any) -> None:
    """Add ``forecast_reference_time = time - forecast_period`` where the reader gave only those.

    iris-grib gives GRIB 1 fields a validity time and a forecast period but no reference
    time, although the message holds it (dataDate/dataTime); the regrid and merge steps, and
    users, look for it by name.
    """
    import cf_units
    import iris.coords

    if cube.coords("forecast_reference_time") or not (cube.coords("time") and cube.coords("forecast_period")):
        return
    time, period = cube.coord("time"), cube.coord("forecast_period")
    if cube.coord_dims(period) != cube.coord_dims(time):
        return
    step = cf_units.Unit(str(time.units.origin).split(" since ")[0])
    points = time.points - period.units.convert(period.points.astype("float64"), step)
    reference = iris.coords.AuxCoord(points, standard_name="forecast_reference_time", units=time.units)
    if cube.coord_dims(time):
        cube.add_aux_coord(reference, cube.coord_dims(time))
    else:
        cube.add_aux_coord(reference)


def _no_int64_coords(cube: Any) -> None:
    """Store int64 coordinates (iris's NIMROD times, iris-grib's forecast_period) as float64.

    CF 1.8 allows only the netCDF classic types for variables (int64 came with CF 1.9), and
    checkers flag them. float64 holds every integer below 2**53 exactly, so seconds since
    1970 lose nothing; int32 would overflow in 2038.
    """
    import numpy as np

    for coord in cube.coords():
        if coord.dtype == np.int64:
            bounds = coord.core_bounds()
            coord.points = coord.core_points().astype(np.float64)
            if bounds is not None:
                coord.bounds = bounds.astype(np.float64)


def _fill_value(dtype: Any) -> Any:
    """netCDF's default fill value for ``dtype``, to be written as an explicit ``_FillValue``.

    iris leaves the attribute out when masked points hold the library default; netCDF4-python
    still masks them, but xarray decodes only a declared ``_FillValue`` and would hand the
    radar's no-coverage cells to the regridder as 9.97e36 mm/h.
    """
    import netCDF4
    import numpy as np

    return netCDF4.default_fillvals.get(np.dtype(dtype).str[1:])
