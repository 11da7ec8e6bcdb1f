"""Exact overlap areas of spherical quadrilaterals with latitude/longitude cells.

Conservative weights from a source grid whose cells are given by 4 corners (curvilinear
grids with bounds, projected and rotated-pole grids with corners derived from their edges)
to a 1-D latitude/longitude target, as CDO ``remapcon`` (YAC) computes them: source cell
edges are great-circle arcs between the corners; target cells are bounded by meridians
(great circles) and parallels (latitude circles, *not* great circles).

Every (source cell, target cell) pair whose bounding boxes meet is clipped exactly, all pairs
of a block at once (numpy, padded polygons, Sutherland-Hodgman against the 4 half-spaces of
the target cell in 3-D):

1. Each source edge is split at its latitude extreme when that lies inside the arc (a
   great circle between two points bulges poleward), so every edge is monotonic in z and
   crosses a latitude plane at most once.
2. Clip by the west and east meridian planes (exact: the intersection of an arc with a
   plane through the axis is the normalised chord point).
3. Clip by ``z >= sin(south)`` and ``z <= sin(north)``; the intersection of an arc with a
   latitude is solved on the arc's great circle; the new edge along the boundary is a
   latitude-circle edge.

The area of the clipped polygon is the great-circle polygon's area (a fan of
Oosterom-Strackee triangle excesses) plus, for each latitude-circle edge, the lens between
that edge and the great-circle chord with the same ends.

Source cells around a pole are first cut into quarters with the pole as a corner.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hpc_workflows.regrid.errors import RegridError

__all__ = ["overlap_matrix", "polygon_area"]

_BLOCK = 100_000  # pairs clipped at once: (block, 16, 3) float64 arrays of ~40 MB
_CELLS = 32_768  # source cells prepared at once: (cells, 8, 3) float64 polygons of ~6 MB
# A source box this far (degrees, ~1 cm) inside a target cell's edges has every vertex
# strictly inside all four clip boundaries (rounding in the side tests is ~1e-16), so the
# clip would leave it whole: such pairs take the source area without a clip. Closer ones
# go through the clip, as every pair did before.
_INSIDE = 1e-7


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", a, b)


def _unit(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.where(n > 0, n, 1.0)


def _next(k: np.ndarray, width: int) -> np.ndarray:
    idx = np.arange(width)[None, :]
    return np.where(idx + 1 < k[:, None], idx + 1, 0)


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[i, idx[i, j]]`` (plain fancy indexing: a few times faster than take_along_axis)."""
    return a[np.arange(a.shape[0])[:, None], idx]


def _compact(points: np.ndarray, keep: np.ndarray, flags: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(~keep, axis=1, kind="stable")
    k = keep.sum(axis=1)
    width = max(int(k.max()) if k.size else 0, 1)
    order = order[:, :width]
    return _take(points, order), k, _take(flags, order)


def _split_edges(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, 4, 3) quadrilaterals -> (m, <= 8, 3) polygons whose edges are monotonic in z.

    Each edge is followed by its latitude extreme when that lies strictly inside the arc
    (z rises at one end of the arc and falls at the other). Polygons are padded to the
    widest of the batch; most fine cells have no such extreme, so they stay 4 wide and
    every clip of their pairs does half the work.
    """
    q = np.roll(corners, -1, axis=1)
    cross = _cross(corners, q)
    n = cross / np.maximum(np.linalg.norm(cross, axis=-1), 1e-300)[..., None]
    # dz/da along the arc at a point x is the z of the tangent n x x.
    rise_p = n[..., 0] * corners[..., 1] - n[..., 1] * corners[..., 0]
    rise_q = n[..., 0] * q[..., 1] - n[..., 1] * q[..., 0]
    inner = rise_p * rise_q < 0
    # The extreme: the arc's great circle's highest (lowest) point, u = z - (z.n) n.
    sign = np.where(rise_p > 0, 1.0, -1.0)
    u = -n * n[..., 2:3]
    u[..., 2] += 1.0
    u = sign[..., None] * _unit(u)
    pts = np.empty(corners.shape[:1] + (8, 3))
    pts[:, 0::2] = corners
    pts[:, 1::2] = u
    keep = np.ones(pts.shape[:2], dtype=bool)
    keep[:, 1::2] = inner
    pts, k, _ = _compact(pts, keep, keep)
    return pts, k


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over the last axis (np.cross is several times slower on small axes)."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    out[..., 1] = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    out[..., 2] = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return out


def _side(p: np.ndarray, kind: str, param: np.ndarray) -> np.ndarray:
    """Signed distance from the clip boundary, >= 0 inside: a plane through the axis with
    normal ``param`` (m, 3), or ``z >= param`` / ``z <= param`` (m,)."""
    if kind == "plane":
        return np.einsum("mvi,mi->mv", p, param)
    if kind == "zmin":
        return p[..., 2] - param[:, None]
    return param[:, None] - p[..., 2]


def _crossing(p: np.ndarray, q: np.ndarray, s: np.ndarray, s_next: np.ndarray, kind: str,
              param: np.ndarray) -> np.ndarray:
    """Where arcs p -> q (n, 3) cross the boundary (their ends are on either side)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = s / (s - s_next)
    # On a plane through the centre: the chord point, normalised, is on the arc exactly.
    chord = _unit(p + np.nan_to_num(t)[:, None] * (q - p))
    if kind == "plane":
        return chord
    # On a latitude circle: solved on the arc's great circle. Its points are
    # cos(a) u + sin(a) w with u towards the highest point, so z = zmax cos(a).
    cross = _cross(p, q)
    length = np.linalg.norm(cross, axis=-1)
    n = cross / np.where(length > 0, length, 1.0)[:, None]
    u = -n * n[:, 2:3]
    u[:, 2] += 1.0
    zmax = np.linalg.norm(u, axis=-1)
    u = u / np.where(zmax > 0, zmax, 1.0)[:, None]
    w = _cross(n, u)
    c = np.clip(param / np.where(zmax > 0, zmax, 1.0), -1.0, 1.0)
    r = np.sqrt(1.0 - c * c)
    best, best_score = chord, np.full(p.shape[0], -np.inf)
    for sign in (1.0, -1.0):
        x = c[:, None] * u + (sign * r)[:, None] * w
        score = np.minimum(_dot(_cross(p, x), n), _dot(_cross(x, q), n))
        better = score > best_score
        best = np.where(better[:, None], x, best)
        best_score = np.where(better, score, best_score)
    # Ends closer than ~1e-8 rad (duplicates left by an earlier clip): the chord is the arc
    # there, and the great circle through them is undefined.
    return np.where((length < 1e-8)[:, None], chord, best)


def _clip(p: np.ndarray, k: np.ndarray, lat_edge: np.ndarray, kind: str, param: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sutherland-Hodgman step keeping ``_side >= 0``, on the polygons that need it.

    Returns the polygons, vertex counts, latitude-edge flags and which polygons were cut.
    """
    m, width, _ = p.shape
    valid = np.arange(width)[None, :] < k[:, None]
    s_all = _side(p, kind, param)
    need = ((s_all < 0) & valid).any(axis=1)
    if not need.any():
        return p, k, lat_edge, need
    rows = np.flatnonzero(need)
    sp_, sk, sf, s = p[rows], k[rows], lat_edge[rows], s_all[rows]
    sv = valid[rows]
    nxt = _next(sk, width)
    q = _take(sp_, nxt)
    s_next = _take(s, nxt)
    cin, nin = s >= 0, s_next >= 0
    cross = (cin != nin) & sv
    n_rows = rows.size
    pts = np.zeros((n_rows, 2 * width, 3))
    keep = np.zeros((n_rows, 2 * width), dtype=bool)
    flags = np.zeros((n_rows, 2 * width), dtype=bool)
    pts[:, 0::2] = sp_
    keep[:, 0::2] = cin & sv
    flags[:, 0::2] = sf
    ri, ci = np.nonzero(cross)
    crossed = np.zeros_like(sp_)
    crossed[ri, ci] = _crossing(sp_[ri, ci], q[ri, ci], s[ri, ci], s_next[ri, ci], kind,
                                param[rows][ri])
    pts[:, 1::2] = crossed
    keep[:, 1::2] = cross
    # Leaving: the edge to the next point (where the polygon comes back) runs along the
    # boundary. Entering: it is the rest of the edge that was cut.
    flags[:, 1::2] = np.where(cin, kind != "plane", sf)
    new_p, new_k, new_f = _compact(pts, keep, flags)
    width2 = max(width, new_p.shape[1])
    if width2 > width:
        p = np.pad(p, ((0, 0), (0, width2 - width), (0, 0)))
        lat_edge = np.pad(lat_edge, ((0, 0), (0, width2 - width)))
    else:
        p, lat_edge = p.copy(), lat_edge.copy()
    k = k.copy()
    p[rows] = np.pad(new_p, ((0, 0), (0, width2 - new_p.shape[1]), (0, 0)))
    lat_edge[rows] = np.pad(new_f, ((0, 0), (0, width2 - new_f.shape[1])))
    k[rows] = new_k
    return p, k, lat_edge, need


def _fan_excess(p: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Signed area of great-circle polygons (fan of triangle excesses from vertex 0)."""
    width = p.shape[1]
    total = np.zeros(p.shape[0])
    a = p[:, 0]
    for i in range(1, width - 1):
        b, c = p[:, i], p[:, i + 1]
        ok = i + 1 < k
        num = _dot(a, _cross(b, c))
        den = 1.0 + _dot(a, b) + _dot(b, c) + _dot(c, a)
        total += np.where(ok, 2.0 * np.arctan2(num, den), 0.0)
    return total


def polygon_area(p: np.ndarray, k: np.ndarray, lat_edge: np.ndarray) -> np.ndarray:
    """Unsigned area (unit sphere) of padded polygons whose edges are great-circle arcs or,
    where ``lat_edge``, arcs of their latitude circle."""
    area = _fan_excess(p, k)
    width = p.shape[1]
    if width and lat_edge.any():
        q = _take(p, _next(k, width))
        valid = np.arange(width)[None, :] < k[:, None]
        use = lat_edge & valid
        z = np.clip(p[..., 2], -1.0, 1.0)
        dlon = np.arctan2(q[..., 1], q[..., 0]) - np.arctan2(p[..., 1], p[..., 0])
        dlon = np.mod(dlon + np.pi, 2 * np.pi) - np.pi
        # Sector between the pole and the latitude arc, minus the great-circle triangle with
        # the pole: the lens between the arc and its chord (north pole for northern arcs).
        pole = np.zeros_like(p)
        pole[..., 2] = np.where(z >= 0, 1.0, -1.0)
        sector = np.where(z >= 0, dlon * (1.0 - z), -dlon * (1.0 + z))
        num = _dot(pole, _cross(p, q))
        den = 1.0 + _dot(pole, p) + _dot(p, q) + _dot(q, pole)
        lens = sector - 2.0 * np.arctan2(num, den)
        area = area + np.where(use, lens, 0.0).sum(axis=1)
    return np.abs(area)


def _relative_lon(pts: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Longitudes (degrees) of the vertices, relative to the first one not on a pole (in
    (-180, 180]), that reference, and which vertices count (valid and not on a pole, where
    longitude means nothing)."""
    width = pts.shape[1]
    use = (np.arange(width)[None, :] < k[:, None]) & (np.abs(pts[..., 2]) < 1.0 - 1e-12)
    lon = np.degrees(np.arctan2(pts[..., 1], pts[..., 0]))
    ref = np.take_along_axis(lon, np.argmax(use, axis=1)[:, None], axis=1)
    return np.mod(lon - ref + 180.0, 360.0) - 180.0, ref[:, 0], use


def _winds_around_pole(rel: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Quadrilaterals (corners' relative longitudes) whose longitude steps add to +-360."""
    rel = np.where(use, rel, np.nan)
    steps = np.mod(np.roll(rel, -1, axis=1) - rel + 180.0, 360.0) - 180.0
    return np.abs(np.nansum(steps, axis=1)) > 180.0


def _lon_range(rel: np.ndarray, ref: np.ndarray, use: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """West/east (unwrapped degrees). Longitude is monotonic along a great-circle arc that
    passes no pole, so the corners bound it."""
    return (ref + np.where(use, rel, np.inf).min(axis=1),
            ref + np.where(use, rel, -np.inf).max(axis=1))


def _quarters(pts: np.ndarray, k: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A polygon around a pole cut into the four quadrants x >< 0, y >< 0: each piece has the
    pole as a corner, so its edges stay monotonic in z and it spans at most 90 degrees."""
    pieces = []
    flags = np.zeros(pts.shape[:2], dtype=bool)
    for sx, sy in ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)):
        nx = np.tile([sx, 0.0, 0.0], (pts.shape[0], 1))
        ny = np.tile([0.0, sy, 0.0], (pts.shape[0], 1))
        q, qk, f, _ = _clip(pts, k, flags, "plane", nx)
        q, qk, _, _ = _clip(q, qk, f, "plane", ny)
        pieces.append((q, qk))
    return pieces


class _Target(NamedTuple):
    """A 1-D latitude/longitude target, sorted for the candidate search."""

    order_y: np.ndarray  # rows by southern edge
    south: np.ndarray  # southern/northern edges (degrees) in that order
    north: np.ndarray
    order_x: np.ndarray  # columns by western edge
    west: np.ndarray  # western/eastern edges (degrees, unwrapped) in that order
    east: np.ndarray
    zs: np.ndarray  # sin of each row's southern/northern edge (row order)
    zn: np.ndarray
    lw: np.ndarray  # each column's western/eastern edge (radians, column order)
    le: np.ndarray
    area: np.ndarray  # (nlat, nlon) cell areas on the unit sphere


def _source_cells(lat_corners: np.ndarray, lon_corners: np.ndarray):
    """Polygons (edges monotonic in z, polar cells quartered) of (m, 4) source corners.

    Returns the padded polygons, their vertex counts, owning cell (index into the m cells),
    which are usable, their west/east/south/north (degrees) and their areas.
    """
    from hpc_workflows.regrid.bilinear import unit_vectors

    corners = unit_vectors(lat_corners, lon_corners).reshape(-1, 4, 3)
    n_src = corners.shape[0]
    ok = np.all(np.isfinite(corners), axis=(1, 2))
    corners = np.where(ok[:, None, None], corners, 0.0)
    pts, k = _split_edges(corners)
    owner = np.arange(n_src)
    rel, ref, use = _relative_lon(corners, np.full(n_src, 4))
    polar = ok & _winds_around_pole(rel, use)
    west, east = _lon_range(rel, ref, use)
    # Adding points on its edges leaves a polygon's area as it was: the quadrilateral's.
    src_area = polygon_area(corners, np.full(n_src, 4), np.zeros((n_src, 4), dtype=bool))
    if polar.any():
        # Cells around a pole (ORCA has two) are cut into quarters that have the pole as a
        # corner; the pieces' overlaps add up in the matrix.
        parts = [(pts[~polar], k[~polar], owner[~polar])]
        parts += [(q, qk, owner[polar]) for q, qk in _quarters(pts[polar], k[polar])]
        width = max(p.shape[1] for p, _, _ in parts)
        pts = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)))
                              for p, _, _ in parts])
        k = np.concatenate([qk for _, qk, _ in parts])
        owner = np.concatenate([o for _, _, o in parts])
        ok = ok[owner] & (k >= 3)
        piece_rel, piece_ref, piece_use = _relative_lon(pts, k)
        west, east = _lon_range(piece_rel, piece_ref, piece_use)
        src_area = np.where(polar[owner], polygon_area(pts, k, np.zeros(pts.shape[:2], bool)),
                            src_area[owner])
    valid = np.arange(pts.shape[1])[None, :] < k[:, None]
    z = pts[..., 2]
    south = np.degrees(np.arcsin(np.clip(np.where(valid, z, 1.0).min(axis=1), -1.0, 1.0)))
    north = np.degrees(np.arcsin(np.clip(np.where(valid, z, -1.0).max(axis=1), -1.0, 1.0)))
    return pts, k, owner, ok, west, east, south, north, src_area


def _candidates(t: _Target, ok: np.ndarray, west: np.ndarray, east: np.ndarray,
                south: np.ndarray, north: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(source, row, column) of every pair whose boxes meet, and whether the source box lies
    inside the target cell with a margin (then no clip can cut it: see ``_INSIDE``)."""
    r0 = np.searchsorted(t.north, south, side="right")
    r1 = np.searchsorted(t.south, north, side="left")
    nr = np.clip(r1 - r0, 0, None)
    out: list[tuple[np.ndarray, ...]] = []
    for shift in (-360.0, 0.0, 360.0):
        c0 = np.searchsorted(t.east, west + shift, side="right")
        c1 = np.searchsorted(t.west, east + shift, side="left")
        ncx = np.clip(c1 - c0, 0, None)
        count = np.where(ok, nr * ncx, 0)
        src = np.repeat(np.arange(ok.size), count)
        if src.size == 0:
            continue
        start = np.cumsum(count) - count
        local = np.arange(src.size) - np.repeat(start, count)
        ncx_s = np.repeat(np.maximum(ncx, 1), count)
        iy = np.repeat(r0, count) + local // ncx_s
        ix = np.repeat(c0, count) + local % ncx_s
        inside = ((south[src] > t.south[iy] + _INSIDE) & (north[src] < t.north[iy] - _INSIDE)
                  & (west[src] + shift > t.west[ix] + _INSIDE)
                  & (east[src] + shift < t.east[ix] - _INSIDE))
        out.append((src, t.order_y[iy], t.order_x[ix], inside))
    # A column can be met under two shifts only for cells wider than 180 degrees: none.
    if not out:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty, np.zeros(0, dtype=bool)
    return tuple(np.concatenate(a) for a in zip(*out))  # type: ignore[return-value]


def _clipped_areas(t: _Target, pts: np.ndarray, k: np.ndarray, src_area: np.ndarray,
                   src: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Overlap areas of source polygons ``src`` with target cells (row, col), by clipping."""
    areas = np.empty(src.size)
    for b0 in range(0, src.size, _BLOCK):
        sl = slice(b0, b0 + _BLOCK)
        s_idx, r_idx, c_idx = src[sl], row[sl], col[sl]
        p, kk = pts[s_idx], k[s_idx]
        flags = np.zeros(p.shape[:2], dtype=bool)
        touched = np.zeros(s_idx.size, dtype=bool)
        lw, le = t.lw[c_idx], t.le[c_idx]
        zero = np.zeros_like(lw)
        for kind, param in (
                ("plane", np.stack([-np.sin(lw), np.cos(lw), zero], axis=1)),
                ("plane", np.stack([np.sin(le), -np.cos(le), zero], axis=1)),
                ("zmin", t.zs[r_idx]), ("zmax", t.zn[r_idx])):
            p, kk, flags, cut = _clip(p, kk, flags, kind, param)
            touched |= cut
        # Pairs whose source polygon no clip touches overlap by the whole polygon, whose
        # area was computed once.
        area = src_area[s_idx]
        cut_rows = np.flatnonzero(touched)
        area[cut_rows] = np.where(kk[cut_rows] >= 3, polygon_area(
            p[cut_rows], kk[cut_rows], flags[cut_rows]), 0.0)
        areas[sl] = area
    return areas


def overlap_matrix(lat_corners: np.ndarray, lon_corners: np.ndarray,
                   target_lat_bnds: np.ndarray, target_lon_bnds: np.ndarray,
                   target_lon: np.ndarray):
    """Sparse (n_target, n_source) matrix of overlap area / target cell area.

    Parameters
    ----------
    lat_corners, lon_corners
        (ny, nx, 4) source cell corners in degrees (either winding).
    target_lat_bnds, target_lon_bnds, target_lon
        The target's (n, 2) edges and longitude centres.
    """
    import scipy.sparse as sp

    from hpc_workflows.regrid.grids import lon_bounds_increasing

    tb = np.sort(np.asarray(target_lat_bnds, dtype=np.float64), axis=1)
    tw, te = lon_bounds_increasing(target_lon_bnds, target_lon)
    if np.any(te - tw > 180.0):
        raise RegridError("method 'conservative' from a curvilinear or projected grid needs "
                          "target cells at most 180 degrees wide in longitude")
    nlat, nlon = tb.shape[0], tw.size
    order_y, order_x = np.argsort(tb[:, 0]), np.argsort(tw)
    zs, zn = np.sin(np.radians(tb[:, 0])), np.sin(np.radians(tb[:, 1]))
    t = _Target(order_y, tb[order_y, 0], tb[order_y, 1], order_x, tw[order_x], te[order_x],
                zs, zn, np.radians(tw), np.radians(te),
                (zn - zs)[:, None] * np.radians(te - tw)[None, :])
    lat_c = np.asarray(lat_corners, dtype=np.float64).reshape(-1, 4)
    lon_c = np.asarray(lon_corners, dtype=np.float64).reshape(-1, 4)
    n_src = lat_c.shape[0]
    rows, cols, vals = [], [], []
    # Source cells a chunk at a time: every array stays a few MB, so memory stays flat and
    # the elementwise passes run from the CPU cache instead of fresh pages.
    for c0 in range(0, n_src, _CELLS):
        pts, k, owner, ok, west, east, south, north, src_area = _source_cells(
            lat_c[c0:c0 + _CELLS], lon_c[c0:c0 + _CELLS])
        src, row, col, inside = _candidates(t, ok, west, east, south, north)
        area = src_area[src]
        cut = np.flatnonzero(~inside)
        area[cut] = _clipped_areas(t, pts, k, src_area, src[cut], row[cut], col[cut])
        val = area / t.area[row, col]
        keep = val > 0
        rows.append(row[keep] * nlon + col[keep])
        cols.append(c0 + owner[src[keep]])
        vals.append(val[keep])
    if not rows:
        return sp.csr_matrix((nlat * nlon, n_src))
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(nlat * nlon, n_src))
    m.sum_duplicates()
    return m
