"""Target grid specifications."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpc_workflows.regrid import parse_target_grid, regrid

from .datasets import centres, latlon_dataset


def test_global_shorthands() -> None:
    g = parse_target_grid("global_1deg")
    np.testing.assert_allclose(g.lat, np.arange(-89.5, 90, 1.0))
    np.testing.assert_allclose(g.lon, np.arange(0.5, 360, 1.0))
    assert g.lat_bnds[0, 0] == -90 and g.lat_bnds[-1, 1] == 90 and g.lon_bnds[-1, 1] == 360
    q = parse_target_grid("global_0.25deg")
    assert q.shape == (720, 1440) and q.lat[0] == -89.875
    assert parse_target_grid({"kind": "global", "resolution": 2}).shape == (90, 180)


def test_regional_edges_and_explicit() -> None:
    r = parse_target_grid({"kind": "regional", "lat": [15, 60], "lon": [-135, -45],
                           "resolution": 2.5})
    assert r.shape == (18, 36) and r.lat[0] == 16.25 and r.lon[0] == -133.75
    e = parse_target_grid({"kind": "explicit", "lat": [10, 0, -10], "lon": [1, 2, 4]})
    np.testing.assert_allclose(e.lat_bnds, [[15, 5], [5, -5], [-5, -15]])
    np.testing.assert_allclose(e.lon_bnds, [[0.5, 1.5], [1.5, 3], [3, 5]])


def test_template_file(tmp_path: Path) -> None:
    path = tmp_path / "model_grid.nc"
    latlon_dataset(centres(-30, 30, 1.5), centres(100, 160, 2.0)).to_netcdf(path)
    g = parse_target_grid({"kind": "file", "path": str(path)})
    assert g.shape == (40, 30) and g.lat[0] == pytest.approx(-29.25)
    # The template's grid is a valid target for data on another grid.
    out = regrid(latlon_dataset(centres(-90, 90, 1.0), centres(0, 360, 1.0)), g)
    assert out.tas.shape == (2, 40, 30) and not out.tas.isnull().any()
    with pytest.raises(ValueError, match="does not exist"):
        parse_target_grid({"kind": "file", "path": str(tmp_path / "missing.nc")})


def test_unknown_spec_lists_valid_forms() -> None:
    with pytest.raises(ValueError, match="valid forms.*global_1deg.*regional.*explicit.*file"):
        parse_target_grid("tiny")
