"""Nearest-neighbour weights: each target cell centre takes its nearest source centre.

Nearest means nearest on the sphere (great circle); ties go to the lower (row, column)
index. How it is found depends on the source:

``latlon`` (1-D axes, any spacing)
    Exact and separable (:func:`_nearest_latlon`, 0.25 -> 1 degree in 14 ms instead of
    0.6 s for a k-d tree): in every source row the nearest point is the one with the
    smallest longitude difference, the same column for all rows; along that column the
    distance is unimodal in latitude, so the nearest row is one of the two rows around its
    analytic minimum.
``projected`` (rectilinear in its own x/y)
    Target centres are transformed into the source's x/y with pyproj (as for bilinear), the
    nearest x and y centre are looked up on each axis, and the great-circle nearest of the
    3 x 3 source centres around that one is taken (:func:`_nearest_projected`). A map
    projection distorts distances smoothly, so over one grid spacing the planar and the
    great-circle neighbour orders differ only between those neighbours. A 1 km
    1000 x 1200 radar grid to 0.05 degrees: 0.10 s, against 2.6 s for the k-d tree over all
    1.2 million centres.
``curvilinear`` (2-D lat/lon)
    A :class:`scipy.spatial.cKDTree` over 3-D unit vectors, which needs no special case for
    the poles or the dateline.

A target centre is outside the source (no value) when it lies outside the source cells:
their lat/lon bounds (``latlon``), their x/y bounds in the source projection
(``projected``), or, for ``curvilinear`` sources, which have no reliable cell outline,
farther from its nearest centre than the largest nearest-neighbour spacing among source
centres. This stops regional sources from being smeared across the globe.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hpc_workflows.regrid.bilinear import native_points, unit_vectors
from hpc_workflows.regrid.grids import SourceGrid, derive_bounds, lon_bounds_increasing
from hpc_workflows.regrid.targets import TargetGrid
from hpc_workflows.regrid.weights import Weights

__all__ = ["nearest_weights"]


def _inside_latlon(source: SourceGrid, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    ok = (lat >= np.min(source.lat_bnds)) & (lat <= np.max(source.lat_bnds))
    west, east = lon_bounds_increasing(source.lon_bnds, source.lon)
    extent = float(np.sum(east - west))
    if abs(extent - 360.0) < 1e-6:
        return ok
    # Regional: measure eastwards from the western edge of the westernmost cell.
    first = float(west[0]) if source.lon[0] <= source.lon[-1] else float(west[-1])
    return ok & (np.mod(lon - first, 360.0) <= extent + 1e-9)


def _haversine(lat1: np.ndarray, lat2: np.ndarray, dlon: np.ndarray) -> np.ndarray:
    """sin^2 of half the great-circle angle (radians in): orders distances exactly even
    when they are small, where the cosine formula rounds them together."""
    return (np.sin((lat2 - lat1) / 2) ** 2
            + np.cos(lat1) * np.cos(lat2) * np.sin(dlon / 2) ** 2)


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

    def hav(row: np.ndarray) -> np.ndarray:
        return _haversine(p1, np.radians(sl[row]), dlon[None, :])

    h_lo, h_hi = hav(lo), hav(hi)
    row = np.where((h_hi < h_lo) | ((h_hi == h_lo) & (hi < lo)), hi, lo)
    return (row * nx + col[None, :]).ravel()


def _nearest_projected(source: SourceGrid, tlat: np.ndarray, tlon: np.ndarray,
                       block: int = 250_000) -> tuple[np.ndarray, np.ndarray]:
    """(flat index of the nearest source centre, inside the source cells) per target point
    of a ``projected`` source; see the module docstring."""
    sx, x, y = native_points(source, tlat, tlon)
    sy = np.asarray(source.y, dtype=np.float64)
    inside = np.isfinite(x) & np.isfinite(y)
    for s, t in ((sx, x), (sy, y)):
        edges = derive_bounds(s)
        inside &= (t >= edges.min()) & (t <= edges.max())
    ny, nx = source.shape
    ix, iy = _nearest_on_axis(sx, np.where(inside, x, sx[0])), _nearest_on_axis(
        sy, np.where(inside, y, sy[0]))
    slat, slon = np.radians(source.lat), np.radians(source.lon)
    best = np.empty(tlat.size, dtype=np.int64)
    offsets = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    for s0 in range(0, tlat.size, block):
        sl = slice(s0, s0 + block)
        rows = np.clip(iy[sl, None] + offsets[None, :, 0], 0, ny - 1)  # (n, 9)
        cols = np.clip(ix[sl, None] + offsets[None, :, 1], 0, nx - 1)
        la, lo = np.radians(tlat[sl])[:, None], np.radians(tlon[sl])[:, None]
        p2, l2 = slat[rows, cols], slon[rows, cols]
        hav = _haversine(la, p2, l2 - lo)
        flat = rows * nx + cols
        # Lowest distance, then lowest flat index among equals (clipped duplicates included).
        order = np.lexsort((flat, hav), axis=1)[:, 0]
        best[sl] = flat[np.arange(flat.shape[0]), order]
    return best, inside


def _nearest_on_axis(axis: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the ``axis`` value (monotonic, either order) nearest to each ``t``."""
    order = np.argsort(axis, kind="stable")
    s = axis[order]
    pos = np.clip(np.searchsorted(s, t), 1, max(s.size - 1, 1))
    lo = np.clip(pos - 1, 0, s.size - 1)
    hi = np.clip(pos, 0, s.size - 1)
    pick_hi = np.abs(s[hi] - t) < np.abs(t - s[lo])
    return order[np.where(pick_hi, hi, lo)]


def nearest_weights(source: SourceGrid, target: TargetGrid) -> Weights:
    """Weights selecting the nearest source cell for every target cell (see module doc)."""
    lon2, lat2 = np.meshgrid(target.lon, target.lat)
    tlat, tlon = lat2.ravel(), lon2.ravel()
    if source.kind == "latlon":
        idx = _nearest_latlon(source.lat, source.lon, np.asarray(target.lat),
                              np.asarray(target.lon))
        ok = _inside_latlon(source, tlat, tlon)
    elif source.kind == "projected":
        idx, ok = _nearest_projected(source, tlat, tlon)
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
