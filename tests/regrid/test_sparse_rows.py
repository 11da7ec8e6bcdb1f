"""SparseRows (numpy-only weights) against scipy.sparse, in each of its three layouts, and the
missing-data rule of apply_weights_numpy against a direct dense computation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from hpc_workflows.regrid.apply import apply_weights_numpy
from hpc_workflows.regrid.conservative import lat_overlap_factor, lon_overlap_factor
from hpc_workflows.regrid.grids import derive_bounds
from hpc_workflows.regrid.sparse_rows import SparseRows
from hpc_workflows.regrid.weights import Weights

LAT_Q = np.linspace(-90, 90, 721)  # 0.25 degree, centres on the poles
LON_Q = np.arange(1440) * 0.25


def _lat(target: np.ndarray, source: np.ndarray = LAT_Q) -> sp.csr_matrix:
    return lat_overlap_factor(derive_bounds(target, clip=(-90, 90)),
                              derive_bounds(source, clip=(-90, 90)))


def _lon(target: np.ndarray, source: np.ndarray = LON_Q) -> sp.csr_matrix:
    return lon_overlap_factor(derive_bounds(target), derive_bounds(source))


def _uniform_windows(rows: int, ncols: int, start: int, step: int,
                     window: list[float]) -> np.ndarray:
    dense = np.zeros((rows, ncols))
    for j in range(rows):
        dense[j, start + step * j:start + step * j + len(window)] = window
    return dense


def _layout(s: SparseRows) -> str:
    if s._kernel("runs", np.float64) is not None:
        return "runs"
    return "blocks" if s._kernel("blocks", np.float64) is not None else "ell"


MATRICES = {
    "nested lat 0.25->1 (runs)": (lambda: _lat(np.arange(-89.5, 90, 1.0)), "runs"),
    "nested lon 0.25->1, wrap cell (runs)": (lambda: _lon(np.arange(0.5, 360, 1.0)), "runs"),
    "lon to -180..180 (runs)": (lambda: _lon(np.arange(-179.5, 180, 1.0)), "runs"),
    "non-nested lat 0.25->0.7 (blocks)": (lambda: _lat(np.arange(-89.65, 90, 0.7)), "blocks"),
    "every row on the same columns (runs of stride 0)": (
        lambda: sp.csr_matrix(np.random.default_rng(1).random((40, 6))), "runs"),
    "same window on every row, spanning 3 blocks, offset (runs)": (
        lambda: sp.csr_matrix(_uniform_windows(rows=30, ncols=70, start=3, step=2,
                                               window=[0.1, 0.2, 0.3, 0.25, 0.15])), "runs"),
    "random, not banded (ell)": (
        lambda: sp.random(60, 500, density=0.01, random_state=3, format="csr"), "ell"),
}


@pytest.mark.parametrize("name", list(MATRICES))
def test_products_match_scipy(name: str) -> None:
    build, layout = MATRICES[name]
    m = build()
    s = SparseRows.from_scipy(m)
    assert _layout(s) == layout and s.nnz == m.nnz
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, m.shape[1], 11))
    y = rng.normal(size=(2, 3, m.shape[1]))
    dense = m.toarray()
    np.testing.assert_allclose(s.left_apply(x), np.einsum("rc,mcn->mrn", dense, x),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.right_apply(y), y @ dense.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.row_sums(), dense.sum(axis=1), rtol=1e-12)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(s.left_apply(x32, np.float32),
                               np.einsum("rc,mcn->mrn", dense, x), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(s.right_apply(y.astype(np.float32), np.float32), y @ dense.T,
                               rtol=2e-5, atol=2e-5)
    # Inputs that are not C-contiguous (the shared-window kernel needs contiguous rows).
    yf = np.asfortranarray(y)
    np.testing.assert_allclose(s.right_apply(yf), y @ dense.T, rtol=1e-12, atol=1e-12)
    xs = np.swapaxes(np.swapaxes(x, 0, 2).copy(), 0, 2)
    np.testing.assert_allclose(s.left_apply(xs), np.einsum("rc,mcn->mrn", dense, x),
                               rtol=1e-12, atol=1e-12)
    # Results written into a caller's buffer.
    out = np.full((2, 3, m.shape[0]), np.nan)
    assert s.right_apply(y, out=out) is out
    np.testing.assert_allclose(out, y @ dense.T, rtol=1e-12, atol=1e-12)
    out = np.full((3, m.shape[0], 11), np.nan)
    assert s.left_apply(x, out=out) is out
    np.testing.assert_allclose(out, np.einsum("rc,mcn->mrn", dense, x), rtol=1e-12, atol=1e-12)


def test_rows_sharing_one_window_use_the_shared_window_kernel() -> None:
    lon = SparseRows.from_scipy(_lon(np.arange(0.5, 360, 1.0)))
    runs = lon._kernel("runs", np.float32)
    assert [u is not None for u in runs.uniform] == [True]
    offset = SparseRows.from_scipy(sp.csr_matrix(_uniform_windows(30, 70, 3, 2, [1, 2, 3, 4, 5])))
    assert offset._kernel("runs", np.float64).uniform[0] is not None
    # The latitude factor's windows differ from row to row (cell areas): no shared window.
    lat = SparseRows.from_scipy(_lat(np.arange(-89.5, 90, 1.0)))
    assert all(u is None for u in lat._kernel("runs", np.float64).uniform)


def test_out_buffers_are_checked() -> None:
    s = SparseRows.from_scipy(_lon(np.arange(0.5, 360, 1.0)))
    y = np.ones((2, 1440))
    for bad in (np.empty((2, 361)), np.empty((2, 360), np.float32),
                np.empty((360, 2)).T):
        with pytest.raises(ValueError, match="out must be"):
            s.right_apply(y, out=bad)


def test_runs_spread_nan_exactly_like_the_weights() -> None:
    m = _lat(np.arange(-89.5, 90, 1.0))
    x = np.ones((m.shape[1], 4))
    x[100, 1] = np.nan
    out = SparseRows.from_scipy(m).left_apply(x)
    touched = m.toarray()[:, 100] != 0
    assert np.array_equal(np.isnan(out[:, 1]), touched)
    assert not np.isnan(np.delete(out, 1, axis=1)).any()


def test_from_coo_sums_duplicates_drops_zeros_and_checks_bounds() -> None:
    s = SparseRows.from_coo([1, 0, 0, 1], [0, 2, 2, 1], [0.0, 1.0, 2.0, 5.0], (2, 3))
    np.testing.assert_array_equal(s.toarray(), [[0, 0, 3], [0, 5, 0]])
    assert s.nnz == 2
    with pytest.raises(ValueError, match="outside the matrix shape"):
        SparseRows.from_coo([0], [3], [1.0], (2, 3))
    empty = SparseRows.from_coo([], [], [], (4, 5))
    assert empty.left_apply(np.ones((5, 2))).tolist() == [[0, 0]] * 4
    assert empty.right_apply(np.ones((3, 5))).shape == (3, 4)


def test_pickle_round_trip_drops_kernels() -> None:
    s = SparseRows.from_scipy(_lon(np.arange(0.5, 360, 1.0)))
    y = np.random.default_rng(1).normal(size=(2, 1440))
    before = s.right_apply(y)
    copy = pickle.loads(pickle.dumps(s))
    assert copy._kernels == {}
    np.testing.assert_array_equal(copy.right_apply(y), before)


def test_weights_pickle_round_trip_and_per_thread_buffers() -> None:
    # Dask ships Weights to workers by pickling; the per-thread buffers stay behind.
    from concurrent.futures import ThreadPoolExecutor

    a, b = _lat(np.arange(-89.5, 90, 1.0)), _lon(np.arange(0.5, 360, 1.0))
    w = Weights("conservative", "k", (721, 1440), (180, 360), a, b)
    rng = np.random.default_rng(6)
    xs = [rng.normal(size=(3, 721, 1440)).astype(np.float32) for _ in range(6)]
    refs = [w.product(x, np.float32) for x in xs]
    copy = pickle.loads(pickle.dumps(w))
    assert not hasattr(copy._local, "y")
    # Threads sharing one Weights must not share the intermediate buffer.
    for _ in range(3):
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda x: copy.product(x, np.float32), xs))
        for g, r in zip(got, refs):
            np.testing.assert_array_equal(g, r)
    np.testing.assert_allclose(refs[0][0], a @ xs[0][0].astype(np.float64) @ b.T.toarray(),
                               rtol=1e-4, atol=1e-3)


def _direct(x: np.ndarray, dense: np.ndarray, min_valid: float) -> np.ndarray:
    """The documented rule, evaluated step by step with a dense weight matrix."""
    flat = x.reshape(x.shape[0], -1)
    valid = ~np.isnan(flat)
    num = np.where(valid, flat, 0) @ dense.T
    den = valid.astype(float) @ dense.T
    keep = (den > 1e-12) & (den >= max(min_valid, 1e-12) * (1 - 1e-12))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(keep, num / np.where(keep, den, 1), np.nan)


def test_apply_matches_the_rule_when_masks_repeat_then_change() -> None:
    # Weights between two small regional grids (3 degrees -> 9 degrees, 10 % outside).
    lat_s, lon_s = np.arange(-28.5, 30, 3.0), np.arange(1.5, 60, 3.0)
    lat_t, lon_t = np.arange(-31.5, 30, 9.0), np.arange(4.5, 60, 9.0)
    a, b = _lat(lat_t, lat_s), _lon(lon_t, lon_s)
    w = Weights("conservative", "k", (lat_s.size, lon_s.size), (lat_t.size, lon_t.size), a, b)
    dense = np.kron(a.toarray(), b.toarray())
    rng = np.random.default_rng(2)
    land = rng.random((lat_s.size, lon_s.size)) < 0.3
    other = rng.random((lat_s.size, lon_s.size)) < 0.3
    chunks = []
    for mask in (None, land, land, other, None):  # cached mask reused, then replaced
        x = rng.normal(280, 5, size=(3, lat_s.size, lon_s.size))
        if mask is not None:
            x[:, mask] = np.nan
        chunks.append(x)
    mixed = chunks[1].copy()
    mixed[1][other] = np.nan  # different masks within one chunk
    chunks.append(mixed)
    for x in chunks:
        got = apply_weights_numpy(x, w, 0.5)
        np.testing.assert_allclose(got.reshape(x.shape[0], -1), _direct(x, dense, 0.5),
                                   rtol=1e-12, atol=1e-12)


def test_complete_global_fields_and_infinities_follow_the_rule() -> None:
    # A fully covered target (no cell missing by coverage alone): NaN steps are found
    # without counting NaN cells; +inf and -inf in one step must not be taken for NaN.
    lat_s, lon_s = np.arange(-88.5, 90, 3.0), np.arange(1.5, 360, 3.0)
    lat_t, lon_t = np.arange(-81, 90, 9.0), np.arange(4.5, 360, 9.0)
    a, b = _lat(lat_t, lat_s), _lon(lon_t, lon_s)
    w = Weights("conservative", "k", (lat_s.size, lon_s.size), (lat_t.size, lon_t.size), a, b)
    kron = sp.kron(a, b, format="csr")
    assert np.allclose(kron.sum(axis=1), 1)
    rng = np.random.default_rng(5)
    x = rng.normal(280, 5, size=(4, lat_s.size, lon_s.size))
    x[1, 10, 20] = np.nan
    x[2, 3, 4], x[2, 40, 90] = np.inf, -np.inf
    x[3, 30:40, :] = np.nan
    got = apply_weights_numpy(x, w, 0.5).reshape(4, -1)
    for t in range(4):
        flat = x[t].ravel()
        valid = ~np.isnan(flat)
        num = kron @ np.where(valid, flat, 0)  # sparse: inf meets no zero weight
        den = kron @ valid.astype(float)
        keep = den >= 0.5
        with np.errstate(invalid="ignore", divide="ignore"):
            ref = np.where(keep, num / np.where(keep, den, 1), np.nan)
        np.testing.assert_allclose(got[t], ref, rtol=1e-12, atol=1e-12)
    assert np.isposinf(got[2]).any() and np.isneginf(got[2]).any()
    assert np.isnan(got[1]).sum() == 0 and np.isnan(got[3]).any()


def _kernel_nbytes(kernel: object) -> int:
    """Bytes of all numpy arrays a kernel holds (walking its tuples and lists)."""
    if isinstance(kernel, np.ndarray):
        return kernel.nbytes
    if isinstance(kernel, (tuple, list)):
        return sum(_kernel_nbytes(k) for k in kernel)
    return 0


def _with_long_rows(base: sp.csr_matrix, rows: list[int], length: int,
                    seed: int) -> sp.csr_matrix:
    """``base`` with ``rows`` replaced by rows of ``length`` random entries anywhere."""
    rng = np.random.default_rng(seed)
    m = base.tolil()
    for r in rows:
        m[r, :] = 0
        cols = rng.choice(base.shape[1], size=length, replace=False)
        m[r, cols] = rng.random(length)
    return m.tocsr()


LONG_ROWS = {
    # ORCA2 -> 1 degree in small: ~3 entries per row, a few rows (the fold) with hundreds.
    "scattered rows, 5 long (ell)": (lambda: _with_long_rows(
        sp.random(2000, 3000, density=1e-3, random_state=5, format="csr"),
        [0, 7, 999, 1500, 1999], 500, seed=6), "ell"),
    # The runs layout keeps its strided views for the regular rows; the long ones join the rest.
    "nested lon factor, 3 long rows (runs)": (lambda: _with_long_rows(
        _lon(np.arange(0.5, 360, 1.0)), [50, 51, 200], 300, seed=7), "runs"),
}


@pytest.mark.parametrize("name", list(LONG_ROWS))
def test_a_few_long_rows_match_scipy_and_do_not_pad_every_row(name: str) -> None:
    """Products equal scipy's CSR ones, and the kernels stay a small multiple of the entries
    (padding every row to the longest one would hold ~100x nnz here)."""
    make, layout = LONG_ROWS[name]
    ref = make()
    s = SparseRows.from_scipy(ref)
    assert _layout(s) == layout
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, ref.shape[1]))
    xl = rng.normal(size=(2, ref.shape[1], 5))
    np.testing.assert_allclose(s.right_apply(x), (ref @ x.T).T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.left_apply(xl), np.stack([ref @ xi for xi in xl]),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.right_apply(x, np.float32), (ref @ x.T).T,
                               rtol=1e-4, atol=1e-4)
    padded = sum(_kernel_nbytes(k) for k in s._kernels.values())
    # One index (8 bytes) and one weight (8 bytes) per entry, four times over, covers the
    # padded part, the long rows and the run windows together.
    assert padded <= 4 * 16 * s.nnz, (padded, s.nnz)
