"""Every kind of output passes the IOOS compliance-checker's CF 1.8 checks, and iris finds
the source's coordinates in it.

The sources are CF-clean (checked first), so any high-priority finding is ours. Both
writers are covered: the streaming ``regrid_file`` and ``regrid()`` +
``write_netcdf_atomic`` (which the time-aggregated path uses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.regrid import regrid, regrid_file
from hpc_workflows.write.cf import cell_methods_for_output, filter_references
from hpc_workflows.write.netcdf import write_netcdf_atomic

from tests.cf.checker import high_priority_findings
from tests.cf.sources import model_level_file

iris = pytest.importorskip("iris")

METHODS = ["conservative", "bilinear", "nearest", "aggregate"]
AGGREGATE = {"statistics": ["mean", "max", "count", "fraction"],
             "bands": [(0.0, 270.0), (270.0, 1000.0)]}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = model_level_file(tmp_path_factory.mktemp("cf") / "forecast.nc")
    assert high_priority_findings(path) == []
    return path


def _write(source: Path, dst: Path, writer: str, method: str, target: str = "global_10deg"
           ) -> Path:
    kwargs = AGGREGATE if method == "aggregate" else {}
    if writer == "stream":
        return regrid_file(source, dst, target, method, **kwargs)
    with xr.open_dataset(source) as ds:
        return write_netcdf_atomic(regrid(ds, target, method, **kwargs), dst)


def _cubes(path: Path) -> dict[str, list]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cubes = iris.load(str(path))
    found: dict[str, list] = {}
    for cube in cubes:
        found.setdefault(cube.var_name, []).append(cube)
    return {k: v[0] for k, v in found.items()}


@pytest.mark.parametrize("writer", ["stream", "memory"])
@pytest.mark.parametrize("method", METHODS)
def test_regridded_output_is_cf_clean_and_keeps_its_coordinates(source: Path, tmp_path: Path,
                                                                 writer: str, method: str) -> None:
    out = _write(source, tmp_path / f"{writer}_{method}.nc", writer, method)
    assert high_priority_findings(out) == []
    cubes = _cubes(out)
    ta, tas = cubes["ta"], cubes["tas"]
    names = {c.name() for c in ta.coords()}
    # Scalar and auxiliary coordinates, and the hybrid-height formula through a regridded
    # surface_altitude: iris rebuilds the altitude coordinate from formula_terms.
    assert {"forecast_reference_time", "forecast_period", "surface_altitude",
            "atmosphere_hybrid_height_coordinate", "sigma", "altitude"} <= names
    assert "height" not in names  # the 1.5 m screen level belongs to tas only
    assert tas.coord("height").points[0] == 1.5
    assert tas.coord("forecast_reference_time").shape == (1,)
    for cube in (ta, tas):
        for cm in cube.cell_methods:
            assert all(n == "area" or cube.coords(n) for n in cm.coord_names), cm
    alt = ta.coord("surface_altitude").points
    assert alt.shape == (18, 36) and np.isfinite(alt).any()
    if method == "aggregate":
        fraction = cubes["ta_fraction"]
        lower = fraction.coord(var_name="band_lower")
        assert lower.units == "K" and lower.long_name
        assert fraction.coords("forecast_period")  # counts/fractions keep the coordinates


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_time_aggregated_output_is_cf_clean(source: Path, tmp_path: Path, how: str) -> None:
    from hpc_workflows.preprocess import PreprocessSettings, preprocess_file
    from hpc_workflows.temporal import TimeAggregation

    settings = PreprocessSettings(target="global_10deg", method="conservative",
                                  time_aggregation=TimeAggregation(freq="3h", how=how))
    out = preprocess_file(source, tmp_path / f"tagg_{how}.nc", settings,
                          input_sha256="0" * 64).output
    assert high_priority_findings(out) == []
    cubes = _cubes(out)
    assert cubes["tas"].coord("height").points[0] == 1.5
    assert "height" not in {c.name() for c in cubes["ta"].coords()}
    assert cubes["ta"].coords("altitude")


@pytest.mark.parametrize("fname,method", [
    ("rotated_pole.nc", "bilinear"),          # projected (rotated pole)
    ("orca2_votemper.nc", "nearest"),         # curvilinear, scalar depth and time
    ("A1B_north_america.nc", "conservative"),  # lat/lon, 360-day calendar
    ("A1B_north_america.nc", "aggregate"),
])
@pytest.mark.parametrize("writer", ["stream", "memory"])
def test_real_files_gain_no_cf_findings(sample_data: Path, tmp_path: Path, fname: str,
                                        method: str, writer: str) -> None:
    """iris-sample-data files (rotated_pole.nc has two findings of its own about its
    rotated coordinates; those describe the source grid and go with it)."""
    src = sample_data / fname
    before = set(high_priority_findings(src))
    target = "global_5deg"
    kwargs = AGGREGATE if method == "aggregate" else {}
    dst = tmp_path / f"{writer}.nc"
    if writer == "stream":
        regrid_file(src, dst, target, method, **kwargs)
    else:
        with xr.open_dataset(src) as ds:
            write_netcdf_atomic(regrid(ds, target, method, **kwargs), dst)
    assert set(high_priority_findings(dst)) - before == set()
    if fname.startswith("orca"):
        cube = _cubes(dst)["votemper"]
        assert cube.coords("depth") and cube.coords("time")
        assert [cm.coord_names for cm in cube.cell_methods] == [("time",)]


def test_projected_cell_methods_name_the_output_dimensions(tmp_path: Path) -> None:
    """'y: x: mean' over a projected grid's dimensions is 'area: mean' on lat/lon."""
    from tests.regrid.datasets import km_radar_dataset

    ds = km_radar_dataset(np.ones((2, 30, 40), dtype=np.float32))
    ds["rr"].attrs.update(cell_methods="time: mean y: x: mean", standard_name="rainfall_rate")
    ds["time"].attrs["standard_name"] = "time"
    ds.attrs["Conventions"] = "CF-1.8"
    src = tmp_path / "radar.nc"
    ds.to_netcdf(src, encoding={n: {"_FillValue": None} for n in ("x", "y", "time")})
    target = {"kind": "regional", "lat": [51.5, 52.5], "lon": [9.0, 11.0], "resolution": 0.1}
    for writer, dst in (("stream", tmp_path / "s.nc"), ("memory", tmp_path / "m.nc")):
        if writer == "stream":
            regrid_file(src, dst, target, "nearest")
        else:
            with xr.open_dataset(src) as opened:
                write_netcdf_atomic(regrid(opened, target, "nearest"), dst)
        with xr.open_dataset(dst) as out:
            assert out.rr.attrs["cell_methods"] == "time: mean area: mean", writer
        assert high_priority_findings(dst) == []


def test_reference_rules() -> None:
    attrs = {"coordinates": "nav_lat nav_lon height", "cell_measures": "area: areacella",
             "formula_terms": "a: ap b: b ps: ps", "units": "K"}
    assert filter_references(attrs, {"height", "ap", "b", "ps"}) == {
        "coordinates": "height", "formula_terms": "a: ap b: b ps: ps", "units": "K"}
    # formula_terms naming a variable the output lacks is dropped, not left dangling
    assert "formula_terms" not in filter_references(attrs, {"height", "ap", "b"})
    assert cell_methods_for_output(
        "time: mean (interval: 1 hour comment: x: y) time_counter: mean y: x: maximum",
        {"y": "lat", "x": "lon"}, {"time", "lat", "lon"}) == \
        "time: mean (interval: 1 hour comment: x: y) area: maximum"
