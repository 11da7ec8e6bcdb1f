"""Bilinear interpolation weights from any supported source grid to a lat/lon target.

- ``latlon`` sources: interpolation is linear in latitude and in longitude separately, so
  the weights are separable (a latitude and a longitude factor, like conservative).
  Longitude is periodic when the source cells cover 360 degrees.
- ``projected`` sources (rotated pole, stereographic, ...): target centres are transformed
  into the source's native x/y with pyproj and interpolated bilinearly in x/y there (the
  grid is rectilinear in its own coordinates), giving 4 weights per target cell.
- ``curvilinear`` sources (2-D lat/lon, e.g. ORCA): linear (barycentric) interpolation on the
  spherical Delaunay triangulation of the source cell centres (the convex hull of their unit
  vectors), 3 weights per target cell. Like bilinear it reproduces fields that are linear in
  the local coordinates and is exact at source points.

On ``latlon`` sources, target points between the outermost row/column of centres and the
outer cell edge (e.g. the polar caps of a global grid whose centres stop at 89.5) take the
value of that outermost row/column (constant, never extrapolated). Target points outside
the source cells (or, for projected/curvilinear sources, outside the outermost centres or
the triangulation) get no weights and so come out missing.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hpc_workflows.regrid.grids import SourceGrid, geographic_transformer, lon_bounds_increasing
from hpc_workflows.regrid.targets import TargetGrid
from hpc_workflows.regrid.weights import Weights

__all__ = ["bilinear_weights", "linear_1d", "native_points", "unit_vectors"]


def linear_1d(src: np.ndarray, tgt: np.ndarray, period: float | None = None,
              edges: tuple[float, float] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation stencil from 1-D ``src`` points (any monotonic order) to ``tgt``.

    Parameters
    ----------
    src, tgt
        Coordinates.
    period
        360.0 for a periodic (global longitude) axis, else ``None``. For a non-periodic
        longitude pass already unwrapped coordinates.
    edges
        (low, high) outer cell edges of a non-periodic axis: targets between an outermost
        centre and its cell's outer edge take that cell's value (constant, not
        extrapolated), e.g. the polar caps of a global grid whose centres stop at 89.5.

    Returns
    -------
    i0, i1, w0, w1
        Indices into ``src`` and weights; ``i0 == -1`` where ``tgt`` is outside ``src``.
    """
    src = np.asarray(src, dtype=np.float64)
    tgt = np.asarray(tgt, dtype=np.float64)
    order = np.argsort(src, kind="stable")
    s = src[order]
    if period is not None:
        base = s[0]
        t = base + np.mod(tgt - base, period)
        s = np.concatenate([s, [s[0] + period]])
        order = np.concatenate([order, order[:1]])
    else:
        t = tgt
    j = np.searchsorted(s, t, side="right") - 1
    inside = (t >= s[0]) & (t <= s[-1])
    j = np.clip(j, 0, s.size - 2)
    span = s[j + 1] - s[j]
    f = np.where(span > 0, (t - s[j]) / np.where(span > 0, span, 1.0), 0.0)
    if edges is not None and period is None:
        lo, hi = min(edges), max(edges)
        below = (t < s[0]) & (t >= lo - 1e-9)
        above = (t > s[-1]) & (t <= hi + 1e-9)
        j = np.where(below, 0, np.where(above, s.size - 2, j))
        f = np.where(below, 0.0, np.where(above, 1.0, f))
        inside = inside | below | above
    i0 = np.where(inside, order[j], -1)
    i1 = np.where(inside, order[j + 1], -1)
    return i0, i1, np.where(inside, 1.0 - f, 0.0), np.where(inside, f, 0.0)


def _factor(i0: np.ndarray, i1: np.ndarray, w0: np.ndarray, w1: np.ndarray,
            n_src: int) -> sp.csr_matrix:
    rows = np.arange(i0.size)
    ok = i0 >= 0
    r = np.concatenate([rows[ok], rows[ok]])
    c = np.concatenate([i0[ok], i1[ok]])
    v = np.concatenate([w0[ok], w1[ok]])
    m = sp.csr_matrix((v, (r, c)), shape=(i0.size, n_src))
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


def _is_periodic(lon_bnds: np.ndarray) -> bool:
    west, east = lon_bounds_increasing(lon_bnds)
    return abs(float(np.sum(east - west)) - 360.0) < 1e-6


def _unwrap_lon(src_lon: np.ndarray, tgt_lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Express both longitudes on one continuous axis starting at the source's west end."""
    s = np.asarray(src_lon, dtype=np.float64)
    if s.size > 1 and s[-1] < s[0]:  # descending: work from the smallest
        west = s[-1]
    else:
        west = s[0]
    s_u = west + np.mod(s - west, 360.0)
    t_u = west + np.mod(np.asarray(tgt_lon, dtype=np.float64) - west, 360.0)
    return s_u, t_u


def _latlon(source: SourceGrid, target: TargetGrid) -> Weights:
    lat_edges = (float(np.min(source.lat_bnds)), float(np.max(source.lat_bnds)))
    a = _factor(*linear_1d(source.lat, target.lat, edges=lat_edges), source.lat.size)
    if _is_periodic(source.lon_bnds):
        b = _factor(*linear_1d(np.mod(source.lon, 360.0), np.mod(target.lon, 360.0), 360.0),
                    source.lon.size)
    else:
        s_u, t_u = _unwrap_lon(source.lon, target.lon)
        west, east = lon_bounds_increasing(source.lon_bnds, source.lon)
        first = float(west[0]) if source.lon[0] <= source.lon[-1] else float(west[-1])
        first = s_u.min() - np.mod(s_u.min() - first, 360.0)  # west edge on the s_u axis
        # Unwrap targets from the west *edge* so points in the western half cell stay there.
        t_u = first + np.mod(np.asarray(target.lon, dtype=np.float64) - first, 360.0)
        b = _factor(*linear_1d(s_u, t_u, edges=(first, first + float(np.sum(east - west)))),
                    source.lon.size)
    return Weights("bilinear", "", source.shape, target.shape, a, b)


def _target_points(target: TargetGrid) -> tuple[np.ndarray, np.ndarray]:
    lon2, lat2 = np.meshgrid(target.lon, target.lat)
    return lat2.ravel(), lon2.ravel()


def native_points(source: SourceGrid, lat: np.ndarray, lon: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geographic points in a ``projected`` source's own x/y.

    Returns
    -------
    sx, x, y
        The source's x axis and the points' x and y (float64). For a rotated pole, whose
        native x is a longitude, ``sx`` and ``x`` are unwrapped onto one continuous axis.
        Points the projection cannot reach are not finite.
    """
    to_native = geographic_transformer(source.crs, source.geodetic, inverse=True)
    x, y = (np.asarray(a, dtype=np.float64) for a in to_native.transform(lon, lat))
    sx = np.asarray(source.x, dtype=np.float64)
    if source.crs.is_geographic:
        sx, x = _unwrap_lon(sx, x)
    return sx, x, y


def _projected(source: SourceGrid, target: TargetGrid) -> Weights:
    lat, lon = _target_points(target)
    sx, x, y = native_points(source, lat, lon)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = np.where(ok, x, np.inf), np.where(ok, y, np.inf)
    ix0, ix1, wx0, wx1 = linear_1d(sx, x)
    iy0, iy1, wy0, wy1 = linear_1d(source.y, y)
    nx = source.x.size
    inside = (ix0 >= 0) & (iy0 >= 0)
    rows = np.flatnonzero(inside)
    cols, vals = [], []
    for iy, wy in ((iy0, wy0), (iy1, wy1)):
        for ix, wx in ((ix0, wx0), (ix1, wx1)):
            cols.append((iy * nx + ix)[inside])
            vals.append((wy * wx)[inside])
    m = sp.csr_matrix((np.concatenate(vals), (np.tile(rows, 4), np.concatenate(cols))),
                      shape=(lat.size, source.shape[0] * source.shape[1]))
    m.sum_duplicates()
    m.eliminate_zeros()
    return Weights("bilinear", "", source.shape, target.shape, matrix=m)


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors for latitude/longitude in degrees."""
    la, lo = np.radians(np.ravel(lat)), np.radians(np.ravel(lon))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)


def _curvilinear(source: SourceGrid, target: TargetGrid, k: int = 12) -> Weights:
    from scipy.spatial import ConvexHull, cKDTree

    pts = unit_vectors(source.lat, source.lon)
    # Duplicate points (e.g. ORCA's folded/overlapping columns) break the hull; keep one.
    _, first = np.unique(np.round(pts, 12), axis=0, return_index=True)
    first = np.sort(first)
    hull = ConvexHull(pts[first])
    tri = first[hull.simplices]  # (ntri, 3) indices into the source points
    v = pts[tri]  # (ntri, 3, 3)
    # Drop hull facets that bridge a gap (regional grids: the hull closes over the back of
    # the sphere): keep triangles whose longest edge is within 4x the typical edge.
    edges = np.stack([np.linalg.norm(v[:, 0] - v[:, 1], axis=1),
                      np.linalg.norm(v[:, 1] - v[:, 2], axis=1),
                      np.linalg.norm(v[:, 2] - v[:, 0], axis=1)], axis=1).max(axis=1)
    keep = edges <= 4.0 * np.median(edges)
    tri, v = tri[keep], v[keep]
    centroids = v.mean(axis=1)
    tree = cKDTree(centroids / np.linalg.norm(centroids, axis=1, keepdims=True))
    lat, lon = _target_points(target)
    p = unit_vectors(lat, lon)
    kk = min(k, len(tri))
    rows_l, tidx_l, bary_l = [], [], []
    # Blocks of target points keep the (n, k, 3, 3) barycentric systems at ~40 MB.
    block = 50_000
    for s0 in range(0, p.shape[0], block):
        pb = p[s0:s0 + block]
        _, cand = tree.query(pb, k=kk)
        cand = cand.reshape(pb.shape[0], kk)
        # Barycentric coordinates of the ray through p in each candidate triangle, by
        # Cramer's rule (p = b0 v0 + b1 v1 + b2 v2; det(a, b, c) = a . (b x c)); degenerate
        # triangles give inf/NaN and are rejected below instead of raising.
        v0, v1, v2 = (v[cand][:, :, i, :] for i in range(3))  # (n, k, 3) each
        q = np.broadcast_to(pb[:, None, :], v0.shape)

        def det(a, b_, c):
            return np.einsum("nki,nki->nk", a, np.cross(b_, c))

        with np.errstate(all="ignore"):
            d = det(v0, v1, v2)
            b = np.stack([det(q, v1, v2), det(v0, q, v2), det(v0, v1, q)], axis=-1) / d[..., None]
            total = b.sum(axis=-1, keepdims=True)  # > 0: the ray hits the triangle's front
            b = b / total  # scale irrelevant: normalise to sum 1
        ok = (np.all(b >= -1e-9, axis=-1) & np.all(np.isfinite(b), axis=-1)
              & (total[..., 0] > 0))
        found = np.flatnonzero(ok.any(axis=1))
        which = np.argmax(ok, axis=1)[found]
        bary = np.clip(b[found, which], 0.0, None)
        bary /= bary.sum(axis=1, keepdims=True)
        rows_l.append(s0 + found)
        tidx_l.append(cand[found, which])
        bary_l.append(bary)
    rows = np.concatenate(rows_l)
    t_idx = np.concatenate(tidx_l)
    bary = np.concatenate(bary_l) if bary_l else np.zeros((0, 3))
    m = sp.csr_matrix((bary.ravel(), (np.repeat(rows, 3), tri[t_idx].ravel())),
                      shape=(p.shape[0], source.lat.size))
    m.sum_duplicates()
    m.eliminate_zeros()
    return Weights("bilinear", "", source.shape, target.shape, matrix=m)


def bilinear_weights(source: SourceGrid, target: TargetGrid) -> Weights:
    """Bilinear (or, on curvilinear grids, triangle-linear) weights; see module docstring."""
    if source.kind == "latlon":
        return _latlon(source, target)
    if source.kind == "projected":
        return _projected(source, target)
    return _curvilinear(source, target)
