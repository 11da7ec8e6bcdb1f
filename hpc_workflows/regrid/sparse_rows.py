"""Sparse regridding matrices in plain numpy, with the two products regridding needs.

Weights are *built* with scipy.sparse (once per grid pair, then cached) but stored, loaded and
applied with this module, for two measured reasons (2-core machine, numpy 2.4, scipy 1.17):

- importing ``scipy.sparse`` costs ~0.17 s per process (mostly scipy's array-API layer), a
  quarter of reading a 1 GB input from the page cache;
- scipy's sparse products hold the GIL, so they cannot overlap with the thread doing the
  netCDF reads (which releases it). ``numpy.matmul`` and ``numpy.einsum`` release it.

Three layouts, picked from the matrix's structure on first use:

regular runs (both products, preferred)
    Each row's entries fit in a window of ``k`` consecutive columns (``k`` = the most
    entries in any row), and along a run of rows the window start advances by a fixed
    stride: every row of a nested grid pair (0.25 -> 1 degree: 4 source rows per target
    row, windows of 5), and all but the wrap-around cell of the longitude factor. A run is
    a zero-copy ``as_strided`` view of the input: ``M @ x`` reduces it with one small BLAS
    product per row; ``x @ M.T`` with one multiply-add per window column over strided
    slices, or, when every row of the run has the same window (the longitude factor of a
    regular grid), with one BLAS matrix-vector product over the input viewed as blocks of
    ``stride`` columns (0.25 against 0.38 ms per 180 x 1440 -> 360 step, medians of 200).
    Rows in no run of at least :data:`MIN_RUN` rows use the ELL gather below.
banded blocks (:meth:`SparseRows.left_apply` when rows form no runs, ``M @ x``)
    Runs of at most :data:`BLOCK_ROWS` consecutive rows become one small dense matrix over
    the columns they touch, applied with BLAS. The latitude factor of separable weights is
    banded (each target row covers a contiguous run of source rows), so the dense blocks
    hold few zeros. Blocks this small stay below OpenBLAS's multithreading threshold, so a
    product does not start BLAS threads that would compete with the I/O thread.
ELL (:meth:`SparseRows.right_apply` when rows form no runs, ``x @ M.T``)
    Every row padded to the same number of entries: ``x[..., idx]`` gathered and weighted
    with ``einsum``. Used for the longitude factor and for full matrices (bilinear and
    nearest from curvilinear or projected grids: 1-4 entries per row; conservative from
    curvilinear grids: ~3). The padded width is capped (:func:`_ell_width`) so that a few
    long rows cannot blow up every row: ORCA2 -> 1 degree conservative has target cells near
    the tripolar fold with 234 source cells against 3.0 on average, and padding every row to
    234 made each step gather 64 800 x 234 values. Rows longer than the cap are kept apart
    in CSR form and applied by gathering their entries and summing each row with
    ``np.add.reduceat`` (numpy, so no scipy import and no GIL held), overwriting the zero
    that the padded part computed for them.

Padding (zeros in dense blocks, repeated columns with weight 0 in ELL) takes part in the
arithmetic, so a NaN in the input can reach a target cell through a zero weight. Callers
that rely on NaN propagation (:mod:`hpc_workflows.regrid.apply`) treat such a NaN as "some
input was missing here" and recompute with the missing values zeroed; the result is the same.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["BLOCK_ROWS", "MIN_RUN", "SparseRows"]

#: Shortest run of rows worth a strided view (shorter runs go to the ELL gather).
MIN_RUN = 8

#: Rows per dense block in :meth:`SparseRows.left_apply`. 4 rows x ~20 columns x 1440 columns
#: of data is ~1e5 multiply-adds: below OpenBLAS's threading threshold (~2.6e5), and measured
#: fastest among 2, 4, 6 and 8 for a 0.25 -> 1 degree latitude factor.
BLOCK_ROWS = 4

# Rows of a run whose windows differ by at most this (relative to the largest weight) share one
# window in right_apply; 1e-13 is ~1000x below float32 resolution and ~1e4x below the 1e-9
# conservation that the tests demand.
_UNIFORM_RTOL = 1e-13

# Cost of one entry of a long row (gather, multiply, reduceat) relative to one padded ELL slot,
# in :func:`_ell_width`'s choice of the padded width. It picks width 4 for ORCA2 -> 1 degree
# (4425 of 64 800 rows in CSR); right_apply of 4 float32 steps, best of 30 with each width
# forced: 2.8 ms at width 3, 2.1-2.2 ms at 4-6, 2.6 at 8, 6.3 at 12 (and 288 ms at 234).
_LONG_ENTRY_COST = 4

# Padding may add up to this many times the entries of the non-empty rows before the padded
# width is capped at all: regular grid pairs (every row of a factor within one or two entries
# of the longest) never reach it, so their layouts are exactly as before.
_MAX_PAD_FILL = 2

# A dense block may hold at most this many times the entries of the rows it replaces before
# left_apply falls back to gathering (a matrix that is not banded would otherwise turn into
# dense blocks as wide as the source grid).
_MAX_BLOCK_FILL = 8


class _Long(NamedTuple):
    """Rows longer than the padded width, in CSR form (see the module docstring)."""

    rows: np.ndarray  # which rows (intp)
    starts: np.ndarray  # offset of each row's first entry in idx/w (for np.add.reduceat)
    idx: np.ndarray  # columns of their entries, row after row
    w: np.ndarray  # their weights

    def right(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out[..., rows] = (x @ M.T)[..., rows]``."""
        if self.rows.size:
            terms = np.take(x, self.idx, axis=-1, mode="clip")
            terms *= self.w
            out[..., self.rows] = np.add.reduceat(terms, self.starts, axis=-1)

    def left(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out[..., rows, :] = (M @ x)[..., rows, :]``."""
        if self.rows.size:
            terms = np.take(x, self.idx, axis=-2, mode="clip")
            terms *= self.w[:, None]
            out[..., self.rows, :] = np.add.reduceat(terms, self.starts, axis=-2)


class _Ell(NamedTuple):
    """The ELL layout: every row padded to ``idx.shape[1]`` entries, plus the long rows."""

    idx: np.ndarray  # (nrows, width) columns; a long row's are its first column, weight 0
    w: np.ndarray  # (nrows, width) weights
    long: _Long


def _ell_width(counts: np.ndarray) -> int:
    """Padded width for rows with ``counts`` entries; longer rows go to the CSR remainder.

    The longest row when padding to it costs at most :data:`_MAX_PAD_FILL` times the entries
    of the non-empty rows; else the width minimising the estimated work per product, ``rows
    with entries x width + _LONG_ENTRY_COST x entries of longer rows``.
    """
    filled = np.sort(counts[counts > 0])
    if filled.size == 0:
        return 1
    longest = int(filled[-1])
    nnz = int(filled.sum())
    if filled.size * longest <= _MAX_PAD_FILL * nnz:
        return longest
    widths = np.unique(filled)
    # Entries in rows longer than each candidate width: total minus those in rows <= width.
    upto = np.cumsum(filled)[np.searchsorted(filled, widths, side="right") - 1]
    cost = filled.size * widths + _LONG_ENTRY_COST * (nnz - upto)
    return int(widths[np.argmin(cost)])


class _Runs(NamedTuple):
    """The regular-runs layout: see the module docstring."""

    width: int  # k: window width in columns
    windows: np.ndarray  # (nrows, k) weights of each row's window
    runs: list[tuple[int, int, int, int]]  # (first row, end row, first window start, stride)
    rest: np.ndarray  # rows in no run
    rest_idx: np.ndarray  # (len(rest), k') ELL columns of those rows
    rest_w: np.ndarray  # (len(rest), k') ELL weights
    long: _Long  # rows longer than k' (all in rest): applied after the ELL gather
    columns: np.ndarray  # (k, nrows) windows.T, contiguous: one weight per row, per column
    # Per run whose rows all share one window: that window zero-padded and cut into rows of
    # ``stride`` weights, one per block a row reads (see right_apply); else None.
    uniform: list[np.ndarray | None]


class SparseRows:
    """A sparse matrix stored by rows (CSR) in numpy arrays.

    Parameters
    ----------
    indptr, indices, data
        CSR arrays: row ``r`` holds ``data[indptr[r]:indptr[r+1]]`` at columns
        ``indices[indptr[r]:indptr[r+1]]``, sorted by column, no duplicates, no zeros.
    shape
        (rows, columns).

    Use :meth:`from_coo` or :meth:`from_scipy` to make one from unsorted triplets.
    """

    __slots__ = ("indptr", "indices", "data", "shape", "_kernels", "_lock")

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                 shape: tuple[int, int]):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.data = np.asarray(data, dtype=np.float64)
        self.shape = (int(shape[0]), int(shape[1]))
        if self.indptr.shape != (self.shape[0] + 1,) or self.indices.shape != self.data.shape:
            raise ValueError(f"inconsistent CSR arrays for shape {self.shape}")
        self._kernels: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_coo(cls, row: np.ndarray, col: np.ndarray, val: np.ndarray,
                 shape: tuple[int, int]) -> SparseRows:
        """From (row, column, value) triplets; duplicates are summed and zeros dropped.

        Raises
        ------
        ValueError
            When an index lies outside ``shape`` or the arrays differ in length.
        """
        row = np.asarray(row, dtype=np.int64).ravel()
        col = np.asarray(col, dtype=np.int64).ravel()
        val = np.asarray(val, dtype=np.float64).ravel()
        nrows, ncols = int(shape[0]), int(shape[1])
        if not row.size == col.size == val.size:
            raise ValueError("row, col and val must have the same length")
        if row.size and (row.min() < 0 or row.max() >= nrows or col.min() < 0
                         or col.max() >= ncols):
            raise ValueError(f"an index lies outside the matrix shape {(nrows, ncols)}")
        order = np.lexsort((col, row))
        row, col, val = row[order], col[order], val[order]
        if row.size:
            first = np.ones(row.size, dtype=bool)
            first[1:] = (row[1:] != row[:-1]) | (col[1:] != col[:-1])
            starts = np.flatnonzero(first)
            val = np.add.reduceat(val, starts)
            row, col = row[starts], col[starts]
            keep = val != 0
            row, col, val = row[keep], col[keep], val[keep]
        indptr = np.zeros(nrows + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=nrows), out=indptr[1:])
        return cls(indptr, col, val, (nrows, ncols))

    @classmethod
    def from_scipy(cls, m: Any) -> SparseRows:
        """From any scipy.sparse matrix or array."""
        coo = m.tocoo()
        return cls.from_coo(coo.row, coo.col, coo.data, coo.shape)

    # -- inspection -------------------------------------------------------------------------

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.data.size)

    def row_sums(self) -> np.ndarray:
        """Sum of each row (float64, length ``shape[0]``)."""
        sums = np.zeros(self.shape[0])
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        np.add.at(sums, rows, self.data)
        return sums

    def to_coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row int32, column int32, value float64) triplets, sorted by row then column."""
        rows = np.repeat(np.arange(self.shape[0], dtype=np.int32), np.diff(self.indptr))
        return rows, self.indices.astype(np.int32), self.data.copy()

    def toarray(self) -> np.ndarray:
        """Dense float64 copy (for tests and small matrices)."""
        r, c, v = self.to_coo()
        dense = np.zeros(self.shape)
        dense[r, c] = v
        return dense

    def __getstate__(self) -> dict[str, Any]:  # kernels and the lock are rebuilt on use
        return {k: getattr(self, k) for k in ("indptr", "indices", "data", "shape")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self._kernels = {}
        self._lock = threading.Lock()

    # -- products ---------------------------------------------------------------------------

    def left_apply(self, x: np.ndarray, dtype: type = np.float64,
                   out: np.ndarray | None = None) -> np.ndarray:
        """``M @ x`` for ``x`` of shape (..., ncols, n), computed in ``dtype``.

        Leading dimensions are batched (one BLAS call per block for all of them). ``out``, if
        given, receives the result: C-contiguous, of ``dtype`` and shape (..., nrows, n).
        """
        if x.shape[-2] != self.shape[1]:
            raise ValueError(f"x has {x.shape[-2]} rows, the matrix {self.shape[1]} columns")
        x = x.astype(dtype, copy=False)
        shape = x.shape[:-2] + (self.shape[0], x.shape[-1])
        out = self._check_out(out, shape, dtype)
        runs = self._kernel("runs", dtype)
        if runs is not None:
            for j0, j1, view, w in self._run_views(runs, x, axis=-2):
                # (rows, 1, k) @ (..., rows, k, n): each row's window of full-length rows
                # is read once by BLAS (multiply-adds over strided rows read it k times).
                np.matmul(w[:, None, :], view, out=out[..., j0:j1, :][..., None, :])
            if runs.rest.size:
                gathered = np.take(x, runs.rest_idx, axis=-2, mode="clip")
                out[..., runs.rest, :] = np.einsum("...rtn,rt->...rn", gathered, runs.rest_w)
                runs.long.left(x, out)
            return out
        blocks = self._kernel("blocks", dtype)
        if blocks is None:  # not banded: gather rows instead
            ell = self._kernel("ell", dtype)
            gathered = np.take(x, ell.idx, axis=-2, mode="clip")
            np.einsum("...rtn,rt->...rn", gathered, ell.w, out=out)
            ell.long.left(x, out)
            return out
        for r0, r1, c0, c1, dense in blocks:
            if dense is None:
                out[..., r0:r1, :] = 0
            else:
                np.matmul(dense, x[..., c0:c1, :], out=out[..., r0:r1, :])
        return out

    def right_apply(self, x: np.ndarray, dtype: type = np.float64,
                    out: np.ndarray | None = None) -> np.ndarray:
        """``x @ M.T`` for ``x`` of shape (..., ncols), computed in ``dtype``.

        ``out``, if given, receives the result: C-contiguous, of ``dtype`` and shape
        (..., nrows).
        """
        if x.shape[-1] != self.shape[1]:
            raise ValueError(f"x has {x.shape[-1]} columns, the matrix {self.shape[1]}")
        x = x.astype(dtype, copy=False)
        out = self._check_out(out, x.shape[:-1] + (self.shape[0],), dtype)
        runs = self._kernel("runs", dtype)
        if runs is not None:
            tmp = None
            for (j0, j1, s0, step), common in zip(runs.runs, runs.uniform):
                dst = out[..., j0:j1]
                if step == 0:  # every row's window is the same columns: one matrix product
                    np.matmul(x[..., s0:s0 + runs.width], runs.windows[j0:j1].T, out=dst)
                    continue
                if common is not None and self._uniform_run(x, dst, s0, step, common):
                    continue
                # One multiply-add per window column over a strided slice of x: 0.43 against
                # 0.70 ms (einsum over the strided window view) per 0.25 -> 1 degree step.
                stop = step * (j1 - j0 - 1) + 1
                cols = runs.columns[:, j0:j1]
                np.multiply(x[..., s0:s0 + stop:step], cols[0], out=dst)
                if tmp is None or tmp.shape != dst.shape:
                    tmp = np.empty_like(dst)
                for t in range(1, runs.width):
                    np.multiply(x[..., s0 + t:s0 + t + stop:step], cols[t], out=tmp)
                    dst += tmp
            if runs.rest.size:
                gathered = np.take(x, runs.rest_idx, axis=-1, mode="clip")
                out[..., runs.rest] = np.einsum("...rt,rt->...r", gathered, runs.rest_w)
                runs.long.right(x, out)
            return out
        ell = self._kernel("ell", dtype)
        # take(mode="clip") skips the bounds checks of x[..., idx] (the indices are valid by
        # construction): 0.25 against 0.39 ms for a 180 x 1440 -> 360 longitude step.
        gathered = np.take(x, ell.idx, axis=-1, mode="clip")
        np.einsum("...rt,rt->...r", gathered, ell.w, out=out)
        ell.long.right(x, out)
        return out

    @staticmethod
    def _check_out(out: np.ndarray | None, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        if out is None:
            return np.empty(shape, dtype=dtype)
        if out.shape != shape or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {np.dtype(dtype)} array of shape "
                             f"{shape}, not {out.dtype} {out.shape}")
        return out

    @staticmethod
    def _uniform_run(x: np.ndarray, dst: np.ndarray, s0: int, step: int,
                     padded: np.ndarray) -> bool:
        """``dst[..., j] = sum_t window[t] * x[..., s0 + step*j + t]`` without per-row weights.

        Row ``j`` reads blocks ``j .. j+q`` of ``step`` consecutive columns, so ``x`` is viewed
        (zero-copy) as blocks; block offset 0 is one BLAS matrix-vector product over
        contiguous memory, and the few weights that overhang into later blocks are scaled
        strided adds. ``padded`` is the window cut into (q+1, step) rows (see _runs).
        Returns False (nothing written) when the view is not possible.
        """
        n = dst.shape[-1]
        nblocks = n + padded.shape[0] - 1
        if x.strides[-1] != x.itemsize or s0 + step * nblocks > x.shape[-1]:
            return False
        blocks = x[..., s0:s0 + step * nblocks].reshape(x.shape[:-1] + (nblocks, step))
        np.matmul(blocks[..., :n, :], padded[0], out=dst)
        for q in range(1, padded.shape[0]):
            for r in np.flatnonzero(padded[q]):
                dst += blocks[..., q:q + n, r] * padded[q, r]
        return True

    @staticmethod
    def _run_views(runs: _Runs, x: np.ndarray, axis: int):
        """(first row, end row, view, window weights) per run; the view has the run's rows
        and their ``k`` window columns as two new axes in place of ``axis``."""
        ax = x.ndim + axis
        stride = x.strides[ax]
        for j0, j1, s0, step in runs.runs:
            base = x[(slice(None),) * ax + (slice(s0, None),)]
            shape = x.shape[:ax] + (j1 - j0, runs.width) + x.shape[ax + 1:]
            strides = x.strides[:ax] + (step * stride, stride) + x.strides[ax + 1:]
            yield j0, j1, as_strided(base, shape, strides, writeable=False), runs.windows[j0:j1]

    # -- kernels (built once per dtype, on first use) --------------------------------------

    def _kernel(self, kind: str, dtype: type) -> Any:
        key = (kind, np.dtype(dtype).str)
        kernel = self._kernels.get(key)
        if kernel is None and key not in self._kernels:
            with self._lock:
                if key not in self._kernels:
                    build = {"blocks": self._blocks, "ell": self._ell,
                             "runs": self._runs}[kind]
                    self._kernels[key] = build(np.dtype(dtype))
            kernel = self._kernels[key]
        return kernel

    def _ell(self, dtype: np.dtype) -> _Ell:
        counts = np.diff(self.indptr)
        width = _ell_width(counts)
        nrows = self.shape[0]
        slot = np.arange(self.nnz) - np.repeat(self.indptr[:-1], counts)
        rows = np.repeat(np.arange(nrows), counts)
        # Padding repeats the row's first column with weight 0 (column 0 for empty rows).
        first = np.zeros(nrows, dtype=np.intp)
        filled = counts > 0
        first[filled] = self.indices[self.indptr[:-1][filled]]
        idx = np.repeat(first[:, None], width, axis=1)
        weights = np.zeros((nrows, width), dtype=dtype)
        short = (counts <= width)[rows]
        idx[rows[short], slot[short]] = self.indices[short]
        weights[rows[short], slot[short]] = self.data[short]
        long_rows = np.flatnonzero(counts > width)
        starts = np.zeros(long_rows.size, dtype=np.intp)
        np.cumsum(counts[long_rows][:-1], out=starts[1:])
        long = _Long(long_rows, starts, self.indices[~short].astype(np.intp),
                     self.data[~short].astype(dtype))
        return _Ell(idx, weights, long)

    def _blocks(self, dtype: np.dtype) -> list[tuple] | None:
        blocks, dense_total = [], 0
        for r0 in range(0, self.shape[0], BLOCK_ROWS):
            r1 = min(r0 + BLOCK_ROWS, self.shape[0])
            s, e = int(self.indptr[r0]), int(self.indptr[r1])
            if s == e:
                blocks.append((r0, r1, 0, 0, None))
                continue
            cols = self.indices[s:e]
            c0, c1 = int(cols.min()), int(cols.max()) + 1
            dense = np.zeros((r1 - r0, c1 - c0), dtype=dtype)
            local = np.repeat(np.arange(r1 - r0), np.diff(self.indptr[r0:r1 + 1]))
            dense[local, cols - c0] = self.data[s:e]
            dense_total += dense.size
            blocks.append((r0, r1, c0, c1, dense))
        if dense_total > _MAX_BLOCK_FILL * max(self.nnz, 1) + 4 * self.shape[0]:
            return None
        return blocks

    def _runs(self, dtype: np.dtype) -> _Runs | None:
        nrows, ncols = self.shape
        counts = np.diff(self.indptr)
        if self.nnz == 0:
            return None
        # The window width is the ELL cap: a few long rows (see _ell_width) would otherwise
        # widen every row's window; they go to the rest, whose ELL keeps them apart.
        width = _ell_width(counts)
        if width > ncols:
            return None
        filled = (counts > 0) & (counts <= width)
        first = np.zeros(nrows, dtype=np.int64)
        last = np.zeros(nrows, dtype=np.int64)
        first[filled] = self.indices[self.indptr[:-1][filled]]
        last[filled] = self.indices[self.indptr[1:][filled] - 1]
        # A window of `width` columns holding all of the row's entries, kept inside the matrix.
        start = np.minimum(first, ncols - width)
        fits = filled & (last - first < width)
        rows = np.repeat(np.arange(nrows), counts)
        windows = np.zeros((nrows, width), dtype=dtype)
        in_window = fits[rows]
        windows[rows[in_window], (self.indices - start[rows])[in_window]] = self.data[in_window]
        runs, j = [], 0
        while j < nrows:
            if not fits[j]:
                j += 1
                continue
            end = j + 1
            step = int(start[j + 1] - start[j]) if j + 1 < nrows and fits[j + 1] else 0
            while end < nrows and fits[end] and start[end] - start[end - 1] == step and step >= 0:
                end += 1
            if end - j >= MIN_RUN:
                runs.append((j, end, int(start[j]), step))
                j = end
            else:
                j += 1
        covered = np.zeros(nrows, dtype=bool)
        for j0, j1, _, _ in runs:
            covered[j0:j1] = True
        if covered.sum() < nrows // 2:
            return None
        rest = np.flatnonzero(~covered)
        ell = self._ell(dtype)
        uniform = []
        for j0, j1, _, step in runs:
            win = windows[j0:j1]
            # A regular grid's longitude factor has the same window on every row (up to
            # rounding far below float32 noise): right_apply then needs no per-row weights.
            same = step > 0 and bool(np.all(np.abs(win - win[0]) <= _UNIFORM_RTOL * np.abs(
                win[0]).max()))
            if not same:
                uniform.append(None)
                continue
            padded = np.zeros(step * -(-width // step), dtype=dtype)
            padded[:width] = win[0]
            uniform.append(padded.reshape(-1, step))
        return _Runs(width, windows, runs, rest, ell.idx[rest], ell.w[rest], ell.long,
                     np.ascontiguousarray(windows.T), uniform)

