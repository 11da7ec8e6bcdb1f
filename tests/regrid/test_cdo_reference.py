"""Agreement with Debian's CDO (an independent implementation) on the same grid pairs.

CDO gets explicit grid descriptions (``r360x180`` would put centres at 0..359) and source
files with explicit bounds and fixed-size dimensions, so both tools see identical cells.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.regrid import regrid

from .datasets import centres, latlon_dataset, smooth_field, with_bounds

pytestmark = pytest.mark.skipif(shutil.which("cdo") is None,
                                reason="cdo missing: run ci/install-system-packages.sh")

GLOBAL_1DEG = """gridtype = lonlat
xsize = 360
ysize = 180
xfirst = 0.5
xinc = 1
yfirst = -89.5
yinc = 1
"""

# float32 noise: 4 ulps at the field's largest values (~330 K); we weight float32 data in
# float32, CDO in float64.
FLOAT32_NOISE_K = 4 * float(np.spacing(np.float32(330.0)))


def _write_source(tmp: Path, lat: np.ndarray, lon: np.ndarray, data: np.ndarray) -> Path:
    ds = with_bounds(latlon_dataset(lat, lon, data=data.astype(np.float32)))
    ds["tas"].encoding["_FillValue"] = np.float32(1e20)  # CDO's usual missing value
    path = tmp / "src.nc"
    ds.to_netcdf(path, unlimited_dims=[])
    return path


def _cdo(tmp: Path, op: str, src: Path, area_min: float | None = None) -> np.ndarray:
    grid = tmp / "target_grid.txt"
    grid.write_text(GLOBAL_1DEG)
    out = tmp / f"{op}.nc"
    env = dict(os.environ)
    if area_min is not None:
        env["REMAP_AREA_MIN"] = str(area_min)
    subprocess.run(["cdo", "-s", "-O", f"{op},{grid}", str(src), str(out)], check=True, env=env,
                   capture_output=True)
    with xr.open_dataset(out) as ds:
        return ds["tas"].values


def _ours(src: Path, method: str, min_valid_fraction: float = 0.5) -> np.ndarray:
    with xr.open_dataset(src) as ds:
        return regrid(ds, "global_1deg", method, min_valid_fraction=min_valid_fraction).tas.values


@pytest.mark.slow
def test_remapcon_nested_quarter_degree_to_1deg(tmp_path: Path) -> None:
    # 721 x 1440: centres on the poles, so the polar source rows are half height.
    lat, lon = np.linspace(-90, 90, 721), np.arange(1440) * 0.25
    src = _write_source(tmp_path, lat, lon, smooth_field(lat, lon, ntime=1))
    ref, ours = _cdo(tmp_path, "remapcon", src), _ours(src, "conservative")
    assert ours.dtype == np.float32 and not np.isnan(ours).any()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=FLOAT32_NOISE_K)


@pytest.mark.parametrize("area_min", [0.5, 0.0])
def test_remapcon_non_nested_with_missing_values(tmp_path: Path, area_min: float) -> None:
    lat, lon = centres(-90, 90, 1.2), centres(-180, 180, 360 / 317)
    data = smooth_field(lat, lon)
    rng = np.random.default_rng(3)
    data[:, rng.random(data.shape[1:]) < 0.3] = np.nan
    data[:, 33:47, 101:151] = np.nan  # a block, so some target cells have no valid data
    src = _write_source(tmp_path, lat, lon, data)
    ref = _cdo(tmp_path, "remapcon", src, area_min=area_min)
    ours = _ours(src, "conservative", min_valid_fraction=area_min)
    # Same cells missing (CDO's REMAP_AREA_MIN is our min_valid_fraction) ...
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    assert np.isnan(ours).sum() > 0
    # ... and the same renormalised values elsewhere.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=FLOAT32_NOISE_K)


def test_remapbil_non_nested(tmp_path: Path) -> None:
    lat, lon = centres(-90, 90, 1.2), centres(-180, 180, 360 / 317)
    data = smooth_field(lat, lon)
    data[:, 60:70, 10:30] = np.nan
    src = _write_source(tmp_path, lat, lon, data)
    ref, ours = _cdo(tmp_path, "remapbil", src), _ours(src, "bilinear")
    # Rows between the outermost source centres (+-89.4). Poleward of them we hold the last
    # row's value; CDO does something else there (not a documented rule), so not compared.
    inner = np.abs(np.arange(-89.5, 90, 1.0)) < 89.4
    r, o = ref[:, inner], ours[:, inner]
    valid = np.isfinite(r)
    assert valid.mean() > 0.9
    # Where CDO has a value we have the same one (CDO marks every target touching a missing
    # source point missing; we renormalise, so we also have values next to the gap).
    assert np.isfinite(o[valid]).all()
    np.testing.assert_allclose(o[valid], r[valid], rtol=0, atol=FLOAT32_NOISE_K)
    assert np.isfinite(o).sum() > valid.sum()
