"""First-order conservative weights between two 1-D latitude/longitude grids.

On lat/lon grids the overlap of a source and a target cell is itself a lat/lon rectangle,
so its exact spherical area factorises: ``R**2 * dlam_overlap * dsin(phi)_overlap``. The
weight matrix is therefore the Kronecker product of a latitude factor ``A`` (target rows x
source rows, overlap in ``sin(latitude)`` divided by the target row's) and a longitude
factor ``B`` (overlap in longitude divided by the target column's width)::

    out[i, j] = sum_k sum_l A[i, k] * B[j, l] * x[k, l]  =  (A @ x @ B.T)[i, j]

which is both exact and far cheaper than a full (n_target x n_source) sparse matrix.
Longitude is periodic (cells are compared modulo 360, so 0..360 and -180..180 grids mix
freely and a cell may straddle the meridian); latitude edges are clipped to +-90, so polar
cells, including half-height rows centred on the poles, get their exact area.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hpc_workflows.regrid.grids import lon_bounds_increasing

__all__ = ["lat_overlap_factor", "lon_overlap_factor"]

_BLOCK_ELEMENTS = 2_000_000  # caps the dense overlap scratch at ~16 MB per block


def _to_csr(rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray],
            shape: tuple[int, int]) -> sp.csr_matrix:
    if rows:
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        r = c = np.zeros(0, dtype=np.int64)
        v = np.zeros(0)
    m = sp.csr_matrix((v, (r, c)), shape=shape)
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


def lat_overlap_factor(target_bnds: np.ndarray, source_bnds: np.ndarray) -> sp.csr_matrix:
    """Latitude factor ``A`` (n_target x n_source) of the conservative weights.

    ``A[i, k]`` is the part of target row ``i``'s ``sin(latitude)`` extent covered by source
    row ``k``. Rows of ``A`` sum to the covered fraction of the target row (1 when fully
    covered). Either latitude order works: edges are sorted per cell.
    """
    t = np.sort(np.clip(np.asarray(target_bnds, dtype=np.float64), -90, 90), axis=1)
    s = np.sort(np.clip(np.asarray(source_bnds, dtype=np.float64), -90, 90), axis=1)
    t_extent = np.sin(np.radians(t[:, 1])) - np.sin(np.radians(t[:, 0]))
    rows, cols, vals = [], [], []
    block = max(1, _BLOCK_ELEMENTS // max(1, s.shape[0]))
    for start in range(0, t.shape[0], block):
        tb = t[start:start + block]
        lo = np.maximum(tb[:, None, 0], s[None, :, 0])
        hi = np.minimum(tb[:, None, 1], s[None, :, 1])
        ii, kk = np.nonzero(hi > lo)
        ov = np.sin(np.radians(hi[ii, kk])) - np.sin(np.radians(lo[ii, kk]))
        ext = t_extent[start + ii]
        keep = ext > 0
        rows.append(start + ii[keep])
        cols.append(kk[keep])
        vals.append(ov[keep] / ext[keep])
    return _to_csr(rows, cols, vals, (t.shape[0], s.shape[0]))


def lon_overlap_factor(target_bnds: np.ndarray, source_bnds: np.ndarray,
                       target_lon: np.ndarray | None = None,
                       source_lon: np.ndarray | None = None) -> sp.csr_matrix:
    """Longitude factor ``B`` (n_target x n_source) of the conservative weights.

    ``B[j, l]`` is the fraction of target column ``j``'s width covered by source column
    ``l``, comparing cells modulo 360 degrees (periodic). The cell centres, when given,
    settle which way round a cell wider than 180 degrees goes (see
    :func:`~hpc_workflows.regrid.grids.lon_bounds_increasing`).
    """
    tw, te = lon_bounds_increasing(target_bnds, target_lon)  # west in [0, 360)
    sw, se = lon_bounds_increasing(source_bnds, source_lon)
    width = te - tw
    rows, cols, vals = [], [], []
    block = max(1, _BLOCK_ELEMENTS // max(1, 3 * sw.size))
    for start in range(0, tw.size, block):
        a, b = tw[start:start + block, None], te[start:start + block, None]
        ov = np.zeros((a.shape[0], sw.size))
        # A shifted copy at -360/0/+360 catches every overlap since both wests are in [0, 360).
        for shift in (-360.0, 0.0, 360.0):
            ov += np.clip(np.minimum(b, se[None, :] + shift) - np.maximum(a, sw[None, :] + shift),
                          0.0, None)
        jj, ll = np.nonzero(ov > 0)
        rows.append(start + jj)
        cols.append(ll)
        vals.append(ov[jj, ll] / width[start + jj])
    return _to_csr(rows, cols, vals, (tw.size, sw.size))
