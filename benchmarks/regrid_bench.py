"""Regridding benchmark: ours vs CDO and xarray-regrid, netCDF in -> netCDF out.

One command::

    .venv/bin/python benchmarks/regrid_bench.py            # 48 and 240 steps + aggregate
    .venv/bin/python benchmarks/regrid_bench.py --steps 48 --no-aggregate
    .venv/bin/python benchmarks/regrid_bench.py --bounds   # + where the time over the floor goes
    .venv/bin/python benchmarks/regrid_bench.py --only --any-grid --weights-1m --rounds 3

Inputs are generated into a temporary folder (deleted afterwards unless ``--keep``): a global
0.25 degree (721 x 1440, centres on the poles) float32 ``t2m(time, lat, lon)``, uncompressed
netCDF4 with a fixed-size time dimension. Every candidate runs in its own process; the
candidates run in ``--rounds`` interleaved rounds (default 5) because this machine is shared
and one run can be 2x off. Printed: median wall seconds, the median over rounds of the ratio
to that round's I/O floor (a process that only reads the whole input with netCDF4 and writes
an output-sized file), the ratio ``cdo remapcon`` / candidate, the largest peak RSS
(``wait4``) of any round, and each output's max abs difference from CDO's (K).

Candidates (target: global 1 degree, centres -89.5..89.5 / 0.5..359.5, conservative):

- ``io_floor``: read everything, write an output-sized file (no arithmetic).
- ``ours regrid_file``: :func:`hpc_workflows.regrid.stream.regrid_file` (netCDF4 streaming,
  8 steps per chunk, compute overlapped with I/O, no xarray/dask import).
- ``ours xarray+dask``: ``xr.open_dataset(chunks={"time": 8})`` -> ``regrid(...)`` ->
  ``write_netcdf_atomic`` (the path the Dagster op takes for in-memory/lazy datasets).
  Both load weights from the cache (build/load timed separately).
- ``cdo_remapcon``: ``cdo remapcon,<grid description>`` (weights built every call).
- ``cdo_stored_weights``: ``cdo remap,<grid>,<weights>`` with weights from ``cdo gencon``.
- ``xarray_regrid``: xarray-regrid's ``.regrid.conservative`` on dask chunks of 8 steps.

Also timed: weight build and load, and ``aggregate`` (mean, max, 4-band fractions, via
``regrid_file``) of a 1000 x 1200 x 288-step field to a 10x coarser grid vs
``xarray.Dataset.coarsen`` (mean+max only; it cannot do band fractions or non-nested grids),
and the same field on a 1 km Lambert azimuthal equal-area grid (a radar composite) to a
0.1 degree lat/lon grid (no peer: coarsen cannot change projection).

Conservative from grids given by cell corners (``--any-grid``), each against ``cdo remapcon``
and ``cdo remap`` with ``gencon`` weights: ORCA2 (curvilinear ocean grid with 4-corner bounds,
land masked) to 1 degree, and a 400 x 500 0.11 degree rotated-pole regional grid to a
0.5 degree regional grid; ours with cached weights and with weights built in the process.
``--weights-1m``: weight build for 1 M source cells (1000 x 1000 rotated pole) to 1 degree,
ours (build, cache load, grid read, in-process) vs ``cdo gencon`` (process wall time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]

CDO_GRID_1DEG = """gridtype = lonlat
xsize = 360
ysize = 180
xfirst = 0.5
xinc = 1
yfirst = -89.5
yinc = 1
"""

IO_FLOOR = r"""
import sys, netCDF4
src, dst, ny, nx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with netCDF4.Dataset(src) as nc:
    name = [n for n, v in nc.variables.items() if v.ndim == 3][0]
    v = nc[name]
    v.set_auto_maskandscale(False)
    nt = v.shape[0]
    with netCDF4.Dataset(dst, "w") as out:
        out.createDimension("time", nt)
        out.createDimension("lat", ny)
        out.createDimension("lon", nx)
        o = out.createVariable(name, "f4", ("time", "lat", "lon"))
        for i in range(0, nt, 8):
            block = v[i:i + 8]
            o[i:i + 8] = block[:, :ny, :nx]
"""

OURS = r"""
import json, sys
from pathlib import Path
from hpc_workflows.regrid.stream import regrid_file
src, dst, wdir = sys.argv[1:4]
# Optional (the any-grid rows): a target (name or JSON spec) and min_valid_fraction; weights
# dir "-" means none, so the weights are built in the process, as cdo remapcon does.
target = sys.argv[4] if sys.argv[4:] else "global_1deg"
target = json.loads(target) if target.startswith("{") else target
regrid_file(src, dst, target, "conservative", weights_dir=None if wdir == "-" else Path(wdir),
            min_valid_fraction=float(sys.argv[5]) if sys.argv[5:] else 0.5)
"""

# Diagnostics for --bounds (not peers; their outputs are not compared): regrid_file with
# the weighting replaced by a strided copy of this benchmark's 721 x 1440 input to the
# 180 x 360 output shape (wrong values on purpose:
# what the streaming, I/O and durable write cost without arithmetic), and regrid_file
# without its fsyncs (what durability costs; the floor does not fsync).
OURS_NO_ARITHMETIC = r"""
import sys
from pathlib import Path
import numpy as np
import hpc_workflows.regrid.apply as apply
from hpc_workflows.regrid.stream import regrid_file
apply.apply_weights_numpy = lambda x, w, *a, **k: np.ascontiguousarray(x[:, :720:4, ::4])
src, dst, wdir = sys.argv[1:4]
regrid_file(src, dst, "global_1deg", "conservative", weights_dir=Path(wdir))
"""

OURS_NOT_DURABLE = r"""
import sys
from pathlib import Path
from hpc_workflows.regrid.stream import regrid_file
from hpc_workflows.write.flush import WriteBehind
WriteBehind.wrote = lambda self, nbytes: None
WriteBehind.finish = WriteBehind.close
src, dst, wdir = sys.argv[1:4]
regrid_file(src, dst, "global_1deg", "conservative", weights_dir=Path(wdir))
"""

OURS_XARRAY = r"""
import sys
from pathlib import Path
import xarray as xr
from hpc_workflows.regrid import regrid
from hpc_workflows.write.netcdf import write_netcdf_atomic
src, dst, wdir = sys.argv[1:4]
ds = xr.open_dataset(src, chunks={"time": 8})
out = regrid(ds, "global_1deg", "conservative", weights_dir=Path(wdir))
write_netcdf_atomic(out, Path(dst), compression_level=0)
"""

XARRAY_REGRID = r"""
import sys
import xarray as xr
import xarray_regrid  # noqa: F401  (registers the .regrid accessor)
from xarray_regrid import Grid, create_regridding_dataset
src, dst = sys.argv[1:3]
ds = xr.open_dataset(src, chunks={"time": 8})
grid = Grid(north=89.5, east=359.5, south=-89.5, west=0.5, resolution_lat=1, resolution_lon=1)
target = create_regridding_dataset(grid, lat_name="lat", lon_name="lon")
out = ds.regrid.conservative(target, latitude_coord="lat")
out.to_netcdf(dst)
"""

# argv: input, [variable, methods (comma-separated), builds per method]. Prints a line per
# method: best build seconds, best cache load seconds, nonzeros, the grid read seconds and the
# best build's CPU seconds (on a busy shared machine, wall time is mostly waiting for a core).
WEIGHTS_TIMING = r"""
import sys, time, tempfile
from pathlib import Path
import numpy as np
import xarray as xr
from hpc_workflows.regrid import parse_target_grid, read_source_grid
from hpc_workflows.regrid.methods import WEIGHT_BUILDERS as _BUILDERS
from hpc_workflows.regrid.weights import save_weights, load_weights, weights_key
src = sys.argv[1]
var = sys.argv[2] if sys.argv[2:] else "t2m"
methods = sys.argv[3].split(",") if sys.argv[3:] else ("conservative", "bilinear", "nearest")
repeats = int(sys.argv[4]) if sys.argv[4:] else 3
t0 = time.perf_counter()
with xr.open_dataset(src) as ds:
    grid = read_source_grid(ds, var)
read = time.perf_counter() - t0
target = parse_target_grid("global_1deg")
d = Path(tempfile.mkdtemp())
for method in methods:
    builds, loads, cpus = [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        w = _BUILDERS[method](grid, target)
        builds.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    key = weights_key(grid.grid_hash(), target.grid_hash(), method)
    w.key = key
    save_weights(w, d / f"{method}.nc")
    for _ in range(3):
        t0 = time.perf_counter()
        load_weights(d / f"{method}.nc", key, method, grid.shape, target.shape)
        loads.append(time.perf_counter() - t0)
    nnz = w.nnz
    print(f"{method} {min(builds):.4f} {min(loads):.4f} {nnz} {read:.4f} {min(cpus):.4f}")
"""

# Target: 0.1 degree over 50-60N 0-12E (the lat/lon radar field, 10x coarser), or with
# argument "laea" over 48-56N 3-17E (the 1 km Lambert field's extent).
AGG_OURS = r"""
import sys
from hpc_workflows.regrid.stream import regrid_file
src, dst = sys.argv[1:3]
lat, lon = ([48, 56], [3, 17]) if sys.argv[3:] == ["laea"] else ([50, 60], [0, 12])
spec = {"kind": "regional", "lat": lat, "lon": lon, "resolution": 0.1}
bands = [(0, 0.5), (0.5, 2), (2, 10), (10, float("inf"))]
regrid_file(src, dst, spec, "aggregate", statistics=["mean", "max", "fraction"], bands=bands,
            time_chunk=8)
"""

AGG_COARSEN = r"""
import sys
import xarray as xr
src, dst = sys.argv[1:3]
ds = xr.open_dataset(src, chunks={"time": 24})
c = ds.coarsen(lat=10, lon=10)
out = xr.merge([c.mean().rename(rr="rr_mean"), c.max().rename(rr="rr_max")])
out.to_netcdf(dst)
"""


# A tiny launcher measures the candidate's peak RSS. Measuring from this (large) process
# would be wrong: a forked child counts the parent's resident pages until it execs.
LAUNCHER = r"""
import resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[1:])
sec = time.perf_counter() - t0
print(sec, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, rc)
"""


# Candidates run with bytecode caching on, in a private cache under the temporary folder
# (nothing is written into the venv). Without it (PYTHONDONTWRITEBYTECODE=1, as on some CI
# machines) every Python candidate recompiles numpy/scipy/xarray from source on each start,
# which is a property of that machine, not of the tools being compared.
CANDIDATE_ENV: dict[str, str] = {}


def run(cmd: list[str], out: list[str] | None = None) -> tuple[float, float]:
    """Run ``cmd`` in its own process; return (wall seconds, its peak RSS in MiB).

    ``out``, when given, receives the lines the candidate printed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(CANDIDATE_ENV)
    res = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True,
                         env=env)
    try:
        sec, rss, rc = res.stdout.strip().splitlines()[-1].split()
    except (IndexError, ValueError):
        raise RuntimeError(f"{cmd[:3]} failed: {res.stderr[-2000:]}") from None
    if int(rc) != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({rc}): {res.stderr[-2000:]}")
    if out is not None:
        out.extend(res.stdout.strip().splitlines()[:-1])
    return float(sec), float(rss)


def make_global_input(path: Path, nsteps: int) -> None:
    """Global 0.25 degree float32 t2m, written 8 steps at a time (bounded memory)."""
    import netCDF4

    lat = np.linspace(-90, 90, 721)
    lon = np.arange(1440) * 0.25
    la, lo = np.radians(lat)[:, None], np.radians(lon)[None, :]
    base = (280 + 20 * np.cos(la) * np.cos(2 * lo) + 5 * np.sin(3 * la)).astype(np.float32)
    rng = np.random.default_rng(0)
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", nsteps)
        nc.createDimension("lat", lat.size)
        nc.createDimension("lon", lon.size)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.standard_name, t.calendar = "hours since 2020-01-01", "time", "standard"
        t[:] = np.arange(nsteps)
        v = nc.createVariable("lat", "f8", ("lat",))
        v.units, v.standard_name = "degrees_north", "latitude"
        v[:] = lat
        v = nc.createVariable("lon", "f8", ("lon",))
        v.units, v.standard_name = "degrees_east", "longitude"
        v[:] = lon
        v = nc.createVariable("t2m", "f4", ("time", "lat", "lon"))
        v.units, v.standard_name = "K", "air_temperature"
        noise = rng.normal(0, 1, size=(8, 721, 1440)).astype(np.float32)
        for i in range(0, nsteps, 8):
            n = min(8, nsteps - i)
            v[i:i + n] = base + noise[:n] + np.float32(i % 24)


def make_radar_input(path: Path, nsteps: int = 288, ny: int = 1000, nx: int = 1200,
                     projected: bool = False) -> None:
    """1000 x 1200 rain rates (mm/h, 20% missing), 288 five-minute steps: on a 0.01 degree
    lat/lon grid, or (``projected``) on a 1 km Lambert azimuthal equal-area grid centred on
    52N 10E, as national radar composites are."""
    import netCDF4

    rng = np.random.default_rng(1)
    ydim, xdim = ("y", "x") if projected else ("lat", "lon")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", nsteps)
        nc.createDimension(ydim, ny)
        nc.createDimension(xdim, nx)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.standard_name = "minutes since 2020-01-01", "time"
        t[:] = 5.0 * np.arange(nsteps)
        if projected:
            for name, n in ((ydim, ny), (xdim, nx)):
                v = nc.createVariable(name, "f8", (name,))
                v.units, v.standard_name = "m", f"projection_{name}_coordinate"
                v[:] = (np.arange(n) - n / 2 + 0.5) * 1000.0
            crs = nc.createVariable("crs", "i4")
            crs.setncatts({"grid_mapping_name": "lambert_azimuthal_equal_area",
                           "latitude_of_projection_origin": 52.0,
                           "longitude_of_projection_origin": 10.0,
                           "false_easting": 0.0, "false_northing": 0.0})
        else:
            v = nc.createVariable("lat", "f8", ("lat",))
            v.units, v.standard_name = "degrees_north", "latitude"
            v[:] = 50 + 0.01 * (np.arange(ny) + 0.5)
            v = nc.createVariable("lon", "f8", ("lon",))
            v.units, v.standard_name = "degrees_east", "longitude"
            v[:] = 0.01 * (np.arange(nx) + 0.5)
        v = nc.createVariable("rr", "f4", ("time", ydim, xdim), fill_value=np.float32(-1))
        v.units = "mm h-1"
        if projected:
            v.grid_mapping = "crs"
        block = rng.gamma(0.5, 3.0, size=(24, ny, nx)).astype(np.float32)
        block[rng.random(block.shape) < 0.2] = -1.0
        for i in range(0, nsteps, 24):
            v[i:i + 24] = np.roll(block, i, axis=2)


def make_rotated_input(path: Path, ny: int, nx: int, nsteps: int, res: float) -> None:
    """Regional rotated-pole float32 ``tas`` (the UK models' pole: rotated (0, 0) is 52.5N
    2.5W), centres ``res`` degrees apart (corners derived from them, as CF files without
    bounds), a smooth field with noise and a missing block."""
    import netCDF4

    rlat = (np.arange(ny) - ny / 2 + 0.5) * res
    rlon = (np.arange(nx) - nx / 2 + 0.5) * res
    la, lo = np.meshgrid(np.radians(rlat), np.radians(rlon), indexing="ij")
    base = (280 + 10 * np.sin(3 * la) * np.cos(2 * lo)).astype(np.float32)
    base[ny // 3:ny // 3 + ny // 10, nx // 2:nx // 2 + nx // 8] = np.nan
    rng = np.random.default_rng(2)
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", nsteps)
        nc.createDimension("rlat", ny)
        nc.createDimension("rlon", nx)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.standard_name = "hours since 2020-01-01", "time"
        t[:] = np.arange(nsteps)
        for name, values, axis in (("rlat", rlat, "latitude"), ("rlon", rlon, "longitude")):
            v = nc.createVariable(name, "f8", (name,))
            v.units, v.standard_name = "degrees", f"grid_{axis}"
            v[:] = values
        crs = nc.createVariable("rotated_pole", "i4")
        crs.setncatts({"grid_mapping_name": "rotated_latitude_longitude",
                       "grid_north_pole_latitude": 37.5, "grid_north_pole_longitude": 177.5})
        v = nc.createVariable("tas", "f4", ("time", "rlat", "rlon"), fill_value=np.float32(1e20))
        v.units, v.grid_mapping = "K", "rotated_pole"
        for i in range(0, nsteps, 8):
            n = min(8, nsteps - i)
            v[i:i + n] = base + rng.normal(0, 1, size=(n, ny, nx)).astype(np.float32)


def make_orca_input(path: Path, nsteps: int) -> None:
    """ORCA2 (148 x 180 tripolar ocean grid, land masked, 4-corner bounds) sea temperature
    from iris-sample-data (the tests' clean CF version of it), repeated with noise."""
    import iris_sample_data
    import xarray as xr

    if str(ROOT) not in sys.path:  # run as a script: the repository root is not on the path
        sys.path.insert(0, str(ROOT))
    from tests.regrid.test_conservative_any_grid import _orca

    two_d = _orca(Path(iris_sample_data.__file__).parent / "sample_data", path.parent)
    with xr.open_dataset(two_d, decode_coords=False) as o:
        o = o.load()
    noise = np.random.default_rng(3).normal(0, 0.1, size=(nsteps,) + o.votemper.shape)
    ds = o.assign(votemper=(("time", "y", "x"),
                            (o.votemper.values[None] + noise).astype(np.float32),
                            o.votemper.attrs))
    ds = ds.assign_coords(time=("time", np.arange(nsteps, dtype=np.float64),
                                {"units": "hours since 2020-01-01", "standard_name": "time"}))
    ds.to_netcdf(path, encoding={"votemper": {"_FillValue": np.float32(1e20)}})
    two_d.unlink()


def max_diff(a: Path, b: Path, var: str) -> float:
    import xarray as xr

    with xr.open_dataset(a) as da, xr.open_dataset(b) as db:
        x = da[var].transpose("time", "lat", "lon").values
        y = db[var].transpose("time", "lat", "lon").values
        if x.shape != y.shape:
            return float("nan")
        return float(np.nanmax(np.abs(x.astype(np.float64) - y)))


def fmt_row(name: str, sec: float, x_floor: float, rss: float, cdo: float | None,
            diff: float | None) -> str:
    c = f"{cdo / sec:6.2f}x" if cdo else "     - "
    d = f"{diff:.2e}" if diff is not None else "    -   "
    f = f"{x_floor:8.2f}x" if x_floor is not None else "        -"
    return f"  {name:<22} {sec:8.2f} {f} {c:>9} {rss:9.0f} {d:>10}"


def interleave(work: Path, candidates: list[tuple[str, list[str]]], outputs: dict[str, str],
               rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Run every candidate once per round, in turn; (seconds, peak RSS) per run."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in candidates}
    for r in range(rounds):
        for name, cmd in candidates:
            (work / outputs[name]).unlink(missing_ok=True)  # every candidate writes a new file
            runs[name].append(run(cmd))
        print(f"    round {r + 1}: " + ", ".join(f"{n} {v[-1][0]:.2f} s" for n, v in runs.items()),
              flush=True)
    return runs


def print_table(results: dict[str, tuple[float, float | None, float]],
                diffs: dict[str, float], unit: str) -> None:
    """Median seconds, x floor, cdo remapcon / this, peak RSS, max |diff| vs cdo remapcon."""
    cdo = results.get("cdo_remapcon", (None,))[0]
    print(f"  {'candidate':<22} {'seconds':>8} {'x floor':>9} {'cdo/this':>9} "
          f"{'peakRSS MiB':>9} {'max|d| vs cdo ' + unit:>10}")
    for name, (sec, x_floor, rss) in results.items():
        print(fmt_row(name, sec, x_floor, rss, cdo, diffs.get(name)))


def bench_global(work: Path, nsteps: int, rounds: int = 5, bounds: bool = False) -> None:
    src = work / f"t2m_{nsteps}.nc"
    t0 = time.perf_counter()
    make_global_input(src, nsteps)
    print(f"\nGlobal 0.25 deg -> 1 deg conservative, {nsteps} steps "
          f"(input {src.stat().st_size / 2**20:.0f} MiB, generated in "
          f"{time.perf_counter() - t0:.1f} s)")
    grid = work / "grid_1deg.txt"
    grid.write_text(CDO_GRID_1DEG)
    wdir = work / "weights"
    cdo_w = work / "cdo_weights.nc"
    # Untimed preparation: our weights cache, CDO's stored weights, a warm page cache, and
    # bytecode caches for every Python candidate (run once on a 1-step file).
    tiny = work / "tiny.nc"
    make_global_input(tiny, 1)
    run([PY, "-c", OURS, str(tiny), str(work / "warm.nc"), str(wdir)])
    run([PY, "-c", OURS_XARRAY, str(tiny), str(work / "warm.nc"), str(wdir)])
    run([PY, "-c", XARRAY_REGRID, str(tiny), str(work / "warm.nc")])
    run([PY, "-c", IO_FLOOR, str(tiny), str(work / "warm.nc"), "180", "360"])
    run([PY, "-c", OURS, str(src), str(work / "warm.nc"), str(wdir)])
    if shutil.which("cdo"):
        run(["cdo", "-s", "-O", f"gencon,{grid}", str(src), str(cdo_w)])
    candidates = [
        ("io_floor", [PY, "-c", IO_FLOOR, str(src), str(work / "floor.nc"), "180", "360"]),
        ("ours regrid_file", [PY, "-c", OURS, str(src), str(work / "ours.nc"), str(wdir)]),
        ("ours xarray+dask", [PY, "-c", OURS_XARRAY, str(src), str(work / "ours_xr.nc"),
                              str(wdir)]),
        ("cdo_remapcon", ["cdo", "-s", "-O", f"remapcon,{grid}", str(src),
                          str(work / "cdo.nc")]),
        ("cdo_stored_weights", ["cdo", "-s", "-O", f"remap,{grid},{cdo_w}", str(src),
                                str(work / "cdo_w.nc")]),
        ("xarray_regrid", [PY, "-c", XARRAY_REGRID, str(src), str(work / "xr.nc")]),
    ]
    if bounds:
        candidates += [
            ("bound: no arithmetic", [PY, "-c", OURS_NO_ARITHMETIC, str(src),
                                      str(work / "bound_a.nc"), str(wdir)]),
            ("bound: no fsync", [PY, "-c", OURS_NOT_DURABLE, str(src), str(work / "bound_f.nc"),
                                 str(wdir)]),
        ]
    candidates = [(n, c) for n, c in candidates if not n.startswith("cdo") or shutil.which("cdo")]
    outputs = {"io_floor": "floor.nc", "ours regrid_file": "ours.nc", "ours xarray+dask": "ours_xr.nc",
               "cdo_remapcon": "cdo.nc", "cdo_stored_weights": "cdo_w.nc", "xarray_regrid": "xr.nc",
               "bound: no arithmetic": "bound_a.nc", "bound: no fsync": "bound_f.nc"}
    runs = interleave(work, candidates, outputs, rounds)
    floors = [sec for sec, _ in runs["io_floor"]]
    results = {name: (statistics.median(sec for sec, _ in v),
                      statistics.median(sec / f for (sec, _), f in zip(v, floors)),
                      max(rss for _, rss in v)) for name, v in runs.items()}
    ref = work / "cdo.nc"
    diffs = {"ours regrid_file": max_diff(work / "ours.nc", ref, "t2m"),
             "ours xarray+dask": max_diff(work / "ours_xr.nc", ref, "t2m"),
             "cdo_stored_weights": max_diff(work / "cdo_w.nc", ref, "t2m"),
             "xarray_regrid": max_diff(work / "xr.nc", ref, "t2m")}
    print_table(results, diffs, "K")
    for f in ("ours.nc", "ours_xr.nc", "cdo.nc", "cdo_w.nc", "xr.nc", "floor.nc", "warm.nc",
              "bound_a.nc", "bound_f.nc"):
        (work / f).unlink(missing_ok=True)
    src.unlink()


def bench_weights(work: Path) -> None:
    src = work / "t2m_w.nc"
    make_global_input(src, 8)
    out = subprocess.run([PY, "-c", WEIGHTS_TIMING, str(src)], check=True, capture_output=True,
                         text=True).stdout
    print("\nWeights 0.25 deg (721x1440) -> 1 deg, best of 3 (in-process):")
    print(f"  {'method':<14} {'build s':>8} {'load s':>8} {'nonzeros':>9}")
    for line in out.split("\n"):
        if line.strip():
            m, b, l_, n, _, _ = line.split()
            print(f"  {m:<14} {float(b):8.4f} {float(l_):8.4f} {int(n):9d}")
    src.unlink()


# Conservative from grids given by cell corners: (input maker, variable, our target, the same
# target for CDO). The regional target is 0.5 degree over the rotated grid's extent and
# beyond it (edge cells partly covered).
ANY_GRID_CASES = {
    "curvilinear ORCA2": (lambda path, n: make_orca_input(path, n), "votemper", "global_1deg",
                          CDO_GRID_1DEG),
    "rotated pole 400x500": (lambda path, n: make_rotated_input(path, 400, 500, n, 0.11), "tas",
                             '{"kind": "regional", "lat": [35, 70], "lon": [-30, 25], '
                             '"resolution": 0.5}',
                             "gridtype = lonlat\nxsize = 110\nysize = 70\nxfirst = -29.75\n"
                             "xinc = 0.5\nyfirst = 35.25\nyinc = 0.5\n"),
}


def bench_any_grid(work: Path, nsteps: int, rounds: int) -> None:
    """Curvilinear and rotated-pole sources, conservative, ours vs cdo, interleaved.

    Ours runs with ``min_valid_fraction=0``, the masking of cdo's default
    ``REMAP_AREA_MIN=0`` (a value wherever any valid source cell overlaps)."""
    if not shutil.which("cdo"):
        print("\nany-grid rows skipped: cdo missing (ci/install-system-packages.sh)")
        return
    for case, (make, var, target, cdo_grid) in ANY_GRID_CASES.items():
        src = work / "any.nc"
        make(src, nsteps)
        print(f"\nConservative from {case}, {nsteps} steps -> {target} "
              f"(input {src.stat().st_size / 2**20:.0f} MiB)")
        grid = work / "grid_any.txt"
        grid.write_text(cdo_grid)
        wdir, cdo_w = work / "weights_any", work / "cdo_weights_any.nc"
        shutil.rmtree(wdir, ignore_errors=True)
        # Untimed: our weights cache, cdo's stored weights, bytecode caches.
        run([PY, "-c", OURS, str(src), str(work / "warm.nc"), str(wdir), target, "0"])
        run(["cdo", "-s", "-O", f"gencon,{grid}", str(src), str(cdo_w)])
        candidates = [
            ("ours regrid_file", [PY, "-c", OURS, str(src), str(work / "ours.nc"), str(wdir),
                                  target, "0"]),
            ("ours, weights built", [PY, "-c", OURS, str(src), str(work / "ours_b.nc"), "-",
                                     target, "0"]),
            ("cdo_remapcon", ["cdo", "-s", "-O", f"remapcon,{grid}", str(src),
                              str(work / "cdo.nc")]),
            ("cdo_stored_weights", ["cdo", "-s", "-O", f"remap,{grid},{cdo_w}", str(src),
                                    str(work / "cdo_w.nc")]),
        ]
        outputs = {"ours regrid_file": "ours.nc", "ours, weights built": "ours_b.nc",
                   "cdo_remapcon": "cdo.nc", "cdo_stored_weights": "cdo_w.nc"}
        runs = interleave(work, candidates, outputs, rounds)
        results = {name: (statistics.median(sec for sec, _ in v), None, max(r for _, r in v))
                   for name, v in runs.items()}
        ref = work / "cdo.nc"
        diffs = {name: max_diff(work / f, ref, var) for name, f in outputs.items()
                 if name != "cdo_remapcon"}
        print_table(results, diffs, "")
        for f in (*outputs.values(), "warm.nc", "any.nc", cdo_w.name):
            (work / f).unlink(missing_ok=True)


def bench_weights_1m(work: Path, rounds: int) -> None:
    """Weights for 1 M source cells (1000 x 1000, 0.1 degree rotated pole) to 1 degree:
    ours (build, then load from the cache, in one process) vs ``cdo gencon``, interleaved."""
    src = work / "rot_1m.nc"
    make_rotated_input(src, 1000, 1000, 1, 0.1)
    grid = work / "grid_1deg.txt"
    grid.write_text(CDO_GRID_1DEG)
    print("\nConservative weights, 1 M cells (1000 x 1000 rotated pole, 0.1 degree) -> 1 degree")
    ours = [PY, "-c", WEIGHTS_TIMING, str(src), "tas", "conservative", "1"]
    run(ours)  # bytecode caches
    cdo = shutil.which("cdo")
    rows: dict[str, list[tuple[float, ...]]] = {"ours": [], "cdo gencon": []}
    for r in range(rounds):
        lines: list[str] = []
        sec, rss = run(ours, lines)
        _, build, load, nnz, read, cpu = lines[-1].split()
        rows["ours"].append((float(build), float(cpu), float(load), float(read), sec, rss))
        if cdo:
            sec, rss = run(["cdo", "-s", "-O", f"gencon,{grid}", str(src), str(work / "w.nc")])
            rows["cdo gencon"].append((float("nan"),) * 4 + (sec, rss))
        print(f"    round {r + 1}: ours build {float(build):.2f} s, process "
              f"{rows['ours'][-1][4]:.2f} s" + (f"; cdo gencon {sec:.2f} s" if cdo else ""),
              flush=True)
    print(f"  {'candidate':<12} {'build s':>8} {'CPU s':>7} {'load s':>8} {'grid read s':>11} "
          f"{'process s':>9} {'peakRSS MiB':>11}  (medians; {nnz} nonzeros)")
    for name, v in rows.items():
        if v:
            med = [statistics.median(x[i] for x in v) for i in range(5)]
            print(f"  {name:<12} {med[0]:8.2f} {med[1]:7.2f} {med[2]:8.3f} {med[3]:11.2f} "
                  f"{med[4]:9.2f} {max(x[5] for x in v):11.0f}")
    for f in ("rot_1m.nc", "w.nc"):
        (work / f).unlink(missing_ok=True)


def bench_aggregate(work: Path) -> None:
    src = work / "radar.nc"
    t0 = time.perf_counter()
    make_radar_input(src)
    print(f"\nAggregate 1000x1200 x 288 steps -> 100x120 (input "
          f"{src.stat().st_size / 2**20:.0f} MiB, generated in {time.perf_counter() - t0:.1f} s)")
    laea = work / "radar_laea.nc"
    make_radar_input(laea, projected=True)
    tiny, tiny_laea = work / "radar_tiny.nc", work / "radar_tiny_laea.nc"
    make_radar_input(tiny, nsteps=24)
    make_radar_input(tiny_laea, nsteps=24, projected=True)
    for code, path, *extra in ((AGG_OURS, tiny), (AGG_COARSEN, tiny),
                               (AGG_OURS, tiny_laea, "laea")):
        run([PY, "-c", code, str(path), str(work / "warm.nc"), *extra])  # bytecode caches
    tiny.unlink()
    tiny_laea.unlink()
    results = {
        "io_floor": run([PY, "-c", IO_FLOOR, str(src), str(work / "f.nc"), "100", "120"]),
        "ours (mean,max,4 fractions)": run([PY, "-c", AGG_OURS, str(src), str(work / "a.nc")]),
        "xarray coarsen (mean,max)": run([PY, "-c", AGG_COARSEN, str(src), str(work / "c.nc")]),
        "ours, 1 km LAEA -> 0.1 deg": run([PY, "-c", AGG_OURS, str(laea), str(work / "p.nc"),
                                           "laea"]),
    }
    floor = results["io_floor"][0]
    print(f"  {'candidate':<28} {'seconds':>8} {'x floor':>9} {'peakRSS MiB':>11}")
    for name, (sec, rss) in results.items():
        print(f"  {name:<28} {sec:8.2f} {sec / floor:8.2f}x {rss:11.0f}")
    import xarray as xr

    with xr.open_dataset(work / "a.nc") as a, xr.open_dataset(work / "c.nc") as c:
        dm = float(np.nanmax(np.abs(a.rr.values - c.rr_mean.values)))
        print(f"  check: max |ours mean - coarsen mean| = {dm:.2e} (coarsen's skipna mean; "
              "ours masks cells with <50% valid)" if np.isfinite(dm) else "")
    for f in ("f.nc", "a.nc", "c.nc", "p.nc", "radar.nc", "radar_laea.nc"):
        (work / f).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[48, 240])
    parser.add_argument("--no-aggregate", action="store_true")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per size")
    parser.add_argument("--bounds", action="store_true",
                        help="also run regrid_file without arithmetic and without fsync "
                             "(diagnostics: where the time over the floor goes)")
    parser.add_argument("--any-grid", action="store_true",
                        help="also: conservative from curvilinear (ORCA2) and rotated-pole "
                             "grids vs cdo remapcon (--any-grid-steps steps)")
    parser.add_argument("--any-grid-steps", type=int, default=48)
    parser.add_argument("--weights-1m", action="store_true",
                        help="also: conservative weights for a 1 M-cell rotated-pole source to "
                             "1 degree, ours vs cdo gencon")
    parser.add_argument("--only", action="store_true",
                        help="run only the sections asked for by --any-grid / --weights-1m "
                             "(a quick run)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put temp inputs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regrid_bench_", dir=args.workdir))
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    CANDIDATE_ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        cdo = subprocess.run(["cdo", "-V"], capture_output=True, text=True) if shutil.which(
            "cdo") else None
        cdo_version = ((cdo.stdout or cdo.stderr).splitlines() or ["?"])[0] if cdo else "missing"
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}; {cdo_version}")
        if not args.only:
            bench_weights(work)
            for n in args.steps:
                bench_global(work, n, args.rounds, args.bounds)
        if args.any_grid:
            bench_any_grid(work, args.any_grid_steps, args.rounds)
        if args.weights_1m:
            bench_weights_1m(work, args.rounds)
        if not args.no_aggregate and not args.only:
            bench_aggregate(work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
