"""Nearest-neighbour weights: each target cell centre takes its nearest source centre.

Nearest means nearest on the sphere (great circle). For projected and curvilinear sources
the search is a :class:`scipy.spatial.cKDTree` over 3-D unit vectors, which needs no special
case for the poles or the dateline. For lat/lon sources (1-D axes, any spacing) it is exact
and separable (:func:`_nearest_latlon`, 0.25 -> 1 degree in 14 ms instead of 0.6 s for the tree):
in every source row the nearest point is the one with the smallest longitude difference,
the same column for all rows; along that column the distance is unimodal in latitude, so
the nearest row is one of the two rows around its analytic minimum. Ties go to the lower
(row, column) index. A target centre is outside the source (no value) when it is
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


def _nearest_latlon(src_lat: np.ndarray, src_lon: np.ndarray, tgt_lat: np.ndarray,
                    tgt_lon: np.ndarray) -> np.ndarray:
    """Flat (row-major) index of the nearest source centre for every target centre.

    ``src_lat``/``src_lon`` are the 1-D axes of a regular lat/lon source, ``tgt_lat``/
    ``tgt_lon`` 1-D target axes; the result has shape (tgt_lat.size * tgt_lon.size,).
    """
    nx = src_lon.size
    # Columns: smallest circular longitude difference; ties to the lower column index.
    so = np.mod(src_lon.astype(np.float64), 360.0)
    order = np.argsort(so, kind="stable")
    ring = so[order]
    t = np.mod(tgt_lon.astype(np.float64), 360.0)
    pos = np.searchsorted(ring, t)
    cand = np.stack([order[(pos - 1) % nx], order[pos % nx]])
    gap = np.abs(t - so[cand])
    gap = np.minimum(gap, 360.0 - gap)
    pick = (gap[1] < gap[0]) | ((gap[1] == gap[0]) & (cand[1] < cand[0]))
    col = np.where(pick, cand[1], cand[0])
    dlon = np.radians(np.where(pick, gap[1], gap[0]))  # (ntx,)
    # Rows: along that column cos(distance) = sin(p1) sin(p2) + cos(p1) cos(p2) cos(dlon),
    # i.e. R cos(p2 - a) with a = atan2(sin p1, cos p1 cos dlon): unimodal in p2.
    p1 = np.radians(tgt_lat.astype(np.float64))[:, None]  # (nty, 1)
    peak = np.degrees(np.arctan2(np.sin(p1), np.cos(p1) * np.cos(dlon)[None, :]))
    sl = src_lat.astype(np.float64)
    lorder = np.argsort(sl, kind="stable")
    lat_sorted = sl[lorder]
    lpos = np.searchsorted(lat_sorted, peak)
    lo = lorder[np.clip(lpos - 1, 0, sl.size - 1)]
    hi = lorder[np.clip(lpos, 0, sl.size - 1)]

    def hav(row: np.ndarray) -> np.ndarray:  # haversine: exact ordering at small distances
        p2 = np.radians(sl[row])
        return (np.sin((p2 - p1) / 2) ** 2
                + np.cos(p1) * np.cos(p2) * np.sin(dlon[None, :] / 2) ** 2)

    h_lo, h_hi = hav(lo), hav(hi)
    row = np.where((h_hi < h_lo) | ((h_hi == h_lo) & (hi < lo)), hi, lo)
    return (row * nx + col[None, :]).ravel()


def nearest_weights(source: SourceGrid, target: TargetGrid) -> Weights:
    """Weights selecting the nearest source cell for every target cell (see module doc)."""
    lon2, lat2 = np.meshgrid(target.lon, target.lat)
    tlat, tlon = lat2.ravel(), lon2.ravel()
    if source.kind == "latlon":
        idx = _nearest_latlon(source.lat, source.lon, np.asarray(target.lat),
                              np.asarray(target.lon))
        ok = _inside_latlon(source, tlat, tlon)
    else:
        from scipy.spatial import cKDTree

        slat, slon = source.centres_2d()
        pts = unit_vectors(slat, slon)
        tree = cKDTree(pts)
        dist, idx = tree.query(unit_vectors(tlat, tlon), k=1)
        nn, _ = tree.query(pts, k=2)
        ok = dist <= float(np.max(nn[:, 1])) * (1.0 + 1e-9)
    rows = np.flatnonzero(ok)
    m = sp.csr_matrix((np.ones(rows.size), (rows, idx[ok])),
                      shape=(tlat.size, source.shape[0] * source.shape[1]))
    return Weights("nearest", "", source.shape, target.shape, matrix=m)
