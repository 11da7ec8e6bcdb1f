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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpc_workflows.regrid.weights import Weights

if TYPE_CHECKING:  # imported lazily: the streaming file path runs without xarray/dask
    import xarray as xr

__all__ = ["apply_weights", "apply_weights_numpy"]

_TINY = 1e-12


def _separable(x: np.ndarray, a, b, dtype: type = np.float64) -> np.ndarray:
    """``A @ x[i] @ B.T`` for every leading index ``i`` of x (m, ny, nx), in ``dtype``.

    One step at a time: ``A @ x[i]`` reads the C-contiguous field in place (no transposed
    copy of the input) and the small (nyt, nx) intermediate is transposed for ``B``. This
    measured 2.3x faster than one big product over all steps, and the scratch memory is a
    single step's worth.
    """
    m = x.shape[0]
    out = np.empty((m, a.shape[0], b.shape[0]), dtype=dtype)
    for i in range(m):
        xi = x[i] if x.dtype == dtype else x[i].astype(dtype)
        y = a @ xi  # (nyt, nx)
        out[i] = (b @ np.ascontiguousarray(y.T)).T
    return out


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
        Pre-computed ``w.coverage()`` (saves recomputing it per chunk).

    Returns
    -------
    numpy.ndarray
        (..., nyt, nxt), float dtype of ``x`` (float64 for integer input).
    """
    lead = x.shape[:-2]
    ny, nx = w.source_shape
    if x.shape[-2:] != (ny, nx):
        raise ValueError(f"data has spatial shape {x.shape[-2:]}, weights expect {(ny, nx)}")
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    x3 = x.reshape((-1, ny, nx))
    valid = ~np.isnan(x3) if np.issubdtype(x3.dtype, np.floating) else np.ones(x3.shape, bool)
    all_valid = bool(valid.all())
    xf = x3 if all_valid else np.where(valid, x3, x3.dtype.type(0))

    def op(arr: np.ndarray, dtype: type) -> np.ndarray:
        parts = w.factors(dtype)
        if w.separable:
            return _separable(arr, parts[0], parts[1], dtype)
        m = arr.shape[0]
        cols = np.ascontiguousarray(arr.reshape(m, ny * nx).T, dtype=dtype)
        return (parts[0] @ cols).T.reshape((m,) + w.target_shape)

    num = op(xf, np.float32 if x3.dtype == np.float32 else np.float64)
    if all_valid:
        den = coverage if coverage is not None else w.coverage()
        den = np.broadcast_to(den, num.shape)
    else:
        den = op(valid, np.float64)  # op casts the boolean mask in its transposed copy
    threshold = max(float(min_valid_fraction), _TINY)
    with np.errstate(invalid="ignore", divide="ignore"):
        # den > 0 keeps "no valid source at all" missing even when min_valid_fraction is 0.
        ok = (den > _TINY) & (den >= threshold * (1.0 - 1e-12))
        out = np.where(ok, num / np.where(ok, den, 1.0), np.nan)
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
    coverage = w.coverage()
    other = [d for d in da.dims if d not in dims]
    da = da.transpose(*other, *dims)
    if da.chunks is not None:
        da = da.chunk({dims[0]: -1, dims[1]: -1})
    out_dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.float64
    return xr.apply_ufunc(
        apply_weights_numpy,
        da,
        kwargs={"w": w, "min_valid_fraction": min_valid_fraction, "coverage": coverage},
        input_core_dims=[list(dims)],
        output_core_dims=[list(out_dims)],
        exclude_dims=set(dims),
        dask="parallelized",
        output_dtypes=[out_dtype],
        dask_gufunc_kwargs={"output_sizes": dict(zip(out_dims, w.target_shape))},
        keep_attrs=True,
    )
