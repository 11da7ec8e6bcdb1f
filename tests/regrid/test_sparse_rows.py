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
