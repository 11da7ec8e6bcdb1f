"""Applying weights to data: NaN-aware, chunked over the non-spatial dimensions.

Missing-data rule (conservative and bilinear; the same idea as xESMF's
``conservative_normed`` with ``na_thres``): for each target cell ::

    valid_weight = sum of weights of the *valid* (non-NaN) source cells
    value        = sum(weight * x over valid cells) / valid_weight

and the value is set missing (NaN) when ``valid_weight < min_valid_fraction`` (and always when
``valid_weight`` is 0). Weights of a fully covered target cell sum to 1, so
``valid_weight`` is the fraction of the target cell (its area for conservative, its
interpolation weight for bilinear) that valid data covers; a target cell only partly inside
the source domain counts the outside part as missing. NaN never becomes 0 and never spreads
further than this rule. Values decoded from ``_FillValue``/``missing_value`` by xarray are NaN
and follow the same rule. For ``nearest`` the single weight is 1 or 0, so a target cell is
missing exactly when its nearest source cell is.

Precision: float32 data is weighted in float32 (2-2.5x faster than float64 here; the result
is within a few float32 ulps of float64 arithmetic, i.e. within the noise of the float32
output), float64 and integer data in float64. The valid-weight sums that decide which cells
are missing are always float64, so the missing-value rule never depends on rounding. The
result has the input's floating dtype (float64 for integer input).

How it is computed (the result is the same as evaluating the rule above directly):

1. The weighted sums are taken over the raw input. A NaN there reaches exactly the target
   cells whose weights touch it, so steps whose result has no NaN inside the cells the
   coverage rule keeps had no missing input that matters: they are divided by the
   (cached) coverage and are done. This skips a pass over the input for complete fields.
2. Steps with such a NaN are recomputed with missing values zeroed, and divided by their
   valid weight. A mask that repeats from step to step (a land-sea mask, a radar domain)
   has its valid weight computed once and reused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpc_workflows.regrid.weights import Weights

if TYPE_CHECKING:  # imported lazily: the streaming file path runs without xarray/dask
    import xarray as xr

__all__ = ["apply_weights", "apply_weights_numpy"]

_TINY = 1e-12


def _keep(valid_weight: np.ndarray, min_valid_fraction: float) -> np.ndarray:
    """Target cells whose valid weight passes the missing-data rule."""
    threshold = max(float(min_valid_fraction), _TINY)
    # valid_weight > 0 keeps "no valid source at all" missing even when the fraction is 0.
    return (valid_weight > _TINY) & (valid_weight >= threshold * (1.0 - 1e-12))


def _normaliser(w: Weights, min_valid_fraction: float, dtype: type) -> tuple[np.ndarray, int]:
    """(1/coverage where kept else NaN, in ``dtype``; number of NaN cells), cached.

    In float32, 1/coverage of a fully covered cell rounds to exactly 1, so those cells are not
    changed at all; at partly covered edges the product is within one float32 ulp of
    dividing in float64.
    """
    key = ("normaliser", float(min_valid_fraction), np.dtype(dtype).str)
    cached = w.scratch.get(key)
    if cached is None:
        coverage = w.coverage()
        keep = _keep(coverage, min_valid_fraction)
        with np.errstate(divide="ignore"):
            scale = np.where(keep, 1.0 / np.where(keep, coverage, 1.0), np.nan)
        cached = w.scratch[key] = (scale.astype(dtype), int((~keep).sum()))
    return cached


def _valid_weight(w: Weights, valid: np.ndarray) -> np.ndarray:
    """Valid weight (m, nyt, nxt) float64 of the boolean masks ``valid`` (m, ny, nx)."""
    last = w.scratch.get("last_mask")  # (mask, its valid weight), one tuple: thread-safe swap
    if last is not None and last[0].shape == valid.shape[1:] and (valid == last[0]).all():
        return np.broadcast_to(last[1], (valid.shape[0],) + last[1].shape)
    if (valid == valid[:1]).all():  # one mask for every step of this block
        weight = w.product(valid[:1], np.float64)[0]
        w.scratch["last_mask"] = (valid[0].copy(), weight)
        return np.broadcast_to(weight, (valid.shape[0],) + weight.shape)
    return w.product(valid, np.float64)


def _steps_with_missing_input(out: np.ndarray, n_missing: int) -> np.ndarray:
    """Indices of the steps of ``out`` (m, nyt, nxt) with more NaN cells than the
    ``n_missing`` cells that the coverage rule alone makes missing."""
    flat = out.reshape(out.shape[0], -1)
    if n_missing == 0:
        # A step's sum is NaN when any cell is NaN (or when +inf meets -inf, which the exact
        # count below then rules out): one reduction instead of a boolean pass and a count.
        with np.errstate(invalid="ignore", over="ignore"):
            suspects = np.flatnonzero(np.isnan(flat.sum(axis=1)))
        if not suspects.size:
            return suspects
        return suspects[np.isnan(flat[suspects]).any(axis=1)]
    return np.flatnonzero(np.isnan(flat).sum(axis=1) > n_missing)


def apply_weights_numpy(x: np.ndarray, w: Weights, min_valid_fraction: float = 0.5,
                        coverage: np.ndarray | None = None) -> np.ndarray:
    """Regrid a numpy array whose last two axes are the source (y, x).

    Parameters
    ----------
    x
        Array (..., ny, nx).
    w
        Weights.
    min_valid_fraction
        Below this valid weight the result is NaN (see module docstring).
    coverage
        Unused; kept for callers of earlier versions (the coverage is cached on ``w``).

    Returns
    -------
    numpy.ndarray
        (..., nyt, nxt), float dtype of ``x`` (float64 for integer input).
    """
    del coverage
    lead = x.shape[:-2]
    ny, nx = w.source_shape
    if x.shape[-2:] != (ny, nx):
        raise ValueError(f"data has spatial shape {x.shape[-2:]}, weights expect {(ny, nx)}")
    floating = np.issubdtype(x.dtype, np.floating)
    out_dtype = x.dtype if floating else np.dtype(np.float64)
    work = np.float32 if x.dtype == np.float32 else np.float64
    x3 = x.reshape((-1, ny, nx))
    scale, n_missing = _normaliser(w, min_valid_fraction, work)
    out = w.product(x3, work)
    out *= scale
    if floating:
        redo = _steps_with_missing_input(out, n_missing)
        if redo.size:
            xs = x3[redo]
            valid = ~np.isnan(xs)
            num = w.product(np.where(valid, xs, xs.dtype.type(0)), work)
            den = _valid_weight(w, valid)
            keep = _keep(den, min_valid_fraction)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[redo] = np.where(keep, num / np.where(keep, den, 1.0), np.nan)
    return out.astype(out_dtype, copy=False).reshape(lead + w.target_shape)


def apply_weights(da: xr.DataArray, w: Weights, dims: tuple[str, str],
                  out_dims: tuple[str, str] = ("lat", "lon"),
                  min_valid_fraction: float = 0.5) -> xr.DataArray:
    """Regrid a DataArray over its spatial ``dims``; lazy (dask) input stays lazy.

    Dask input is rechunked to a single chunk in the two spatial dimensions and processed
    chunk by chunk along the others, so memory scales with the chunk size, not the number
    of time steps.
    """
    import xarray as xr

    if not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction={min_valid_fraction!r} must be within [0, 1]")
    other = [d for d in da.dims if d not in dims]
    da = da.transpose(*other, *dims)
    if da.chunks is not None:
        da = da.chunk({dims[0]: -1, dims[1]: -1})
    out_dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.float64
    return xr.apply_ufunc(
        apply_weights_numpy,
        da,
        kwargs={"w": w, "min_valid_fraction": min_valid_fraction},
        input_core_dims=[list(dims)],
        output_core_dims=[list(out_dims)],
        exclude_dims=set(dims),
        dask="parallelized",
        output_dtypes=[out_dtype],
        dask_gufunc_kwargs={"output_sizes": dict(zip(out_dims, w.target_shape))},
        keep_attrs=True,
    )
