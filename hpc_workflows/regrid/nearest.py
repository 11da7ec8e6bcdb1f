"""Nearest-neighbour weights: each target cell centre takes its nearest source centre.

Distances are chordal distances between unit vectors on the sphere (a :class:`scipy.spatial.
cKDTree` over 3-D points), so the method works for any source grid, the poles and the
dateline without special cases. A target centre is outside the source (no value) when it is
outside the source cells' lat/lon bounds (``latlon`` sources) or farther from its nearest
source centre than the largest nearest-neighbour spacing among source centres (other grids),
which stops regional sources from being smeared across the globe.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hpc_workflows.regrid.bilinear import unit_vectors
from hpc_workflows.regrid.grids import SourceGrid, lon_bounds_increasing
from hpc_workflows.regrid.targets import TargetGrid
from hpc_workflows.regrid.weights import Weights

__all__ = ["nearest_weights"]


def _inside_latlon(source: SourceGrid, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    ok = (lat >= np.min(source.lat_bnds)) & (lat <= np.max(source.lat_bnds))
    west, east = lon_bounds_increasing(source.lon_bnds)
    extent = float(np.sum(east - west))
    if abs(extent - 360.0) < 1e-6:
        return ok
    # Regional: measure eastwards from the western edge of the westernmost cell.
    first = float(west[0]) if source.lon[0] <= source.lon[-1] else float(west[-1])
    return ok & (np.mod(lon - first, 360.0) <= extent + 1e-9)


def nearest_weights(source: SourceGrid, target: TargetGrid) -> Weights:
    """Weights selecting the nearest source cell for every target cell (see module doc)."""
    from scipy.spatial import cKDTree

    slat, slon = source.centres_2d()
    pts = unit_vectors(slat, slon)
    tree = cKDTree(pts)
    lon2, lat2 = np.meshgrid(target.lon, target.lat)
    tlat, tlon = lat2.ravel(), lon2.ravel()
    dist, idx = tree.query(unit_vectors(tlat, tlon), k=1)
    if source.kind == "latlon":
        ok = _inside_latlon(source, tlat, tlon)
    else:
        nn, _ = tree.query(pts, k=2)
        ok = dist <= float(np.max(nn[:, 1])) * (1.0 + 1e-9)
    rows = np.flatnonzero(ok)
    m = sp.csr_matrix((np.ones(rows.size), (rows, idx[ok])),
                      shape=(tlat.size, pts.shape[0]))
    return Weights("nearest", "", source.shape, target.shape, matrix=m)
