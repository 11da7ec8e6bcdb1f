"""Resampling in time with CF ``cell_methods`` and time bounds.

:func:`resample_time` groups time steps into periods (``freq`` as for
:meth:`xarray.Dataset.resample`, e.g. ``"3h"``, ``"1D"``, ``"1MS"``), reduces each period with
``how`` (``mean``, ``sum``, ``min``, ``max``) and multiplies by ``scale``. Typical use: 5-minute
rain rates in mm/h to 3-hourly accumulations in mm is ``how="sum", scale=5/60`` (each rate
holds for 5 minutes = 1/12 h), with ``units="mm"``.

Conventions chosen where CF leaves freedom:

- Each output step is labelled with the *start* of its period and carries ``time_bnds``
  ``[start, end)``; the time coordinate gets ``bounds = "time_bnds"``.
- ``cell_methods`` gets ``time: <method> (interval: <input step>)`` appended, where
  ``<method>`` is ``mean``/``sum``/``minimum``/``maximum`` (CF names), so an input that was
  already ``time: mean`` (e.g. model output averaged over its step) becomes
  ``time: mean time: sum (interval: 300 seconds)``.
- A period with any missing input step is missing for ``sum`` (a partial sum would be
  silently too small) and uses the valid steps for ``mean``/``min``/``max``; a period with no
  valid step is always missing.
- Only variables with a ``time`` dimension are resampled; others are kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["resample_time", "HOW"]

HOW = {"mean": "mean", "sum": "sum", "min": "minimum", "max": "maximum"}


def _step_text(time: xr.DataArray) -> str | None:
    if time.size < 2:
        return None
    try:
        step = (time.values[1] - time.values[0])
        seconds = step / np.timedelta64(1, "s") if isinstance(step, np.timedelta64) else \
            step.total_seconds()
    except (TypeError, AttributeError):
        return None
    return f"{seconds:g} seconds"


def resample_time(ds: xr.Dataset, freq: str, how: str = "mean", scale: float = 1.0, *,
                  time_dim: str = "time", units: str | None = None) -> xr.Dataset:
    """Resample ``ds`` in time; see the module docstring for the conventions.

    Parameters
    ----------
    ds
        Dataset with a decoded (datetime or cftime) ``time_dim`` coordinate.
    freq
        Period, e.g. ``"3h"``, ``"1D"``, ``"1MS"``.
    how
        ``"mean"``, ``"sum"``, ``"min"`` or ``"max"``.
    scale
        Factor applied after reduction (e.g. 5/60 to turn a sum of 5-minute mm/h rates into
        mm).
    time_dim
        Name of the time dimension.
    units
        New ``units`` for the resampled variables (e.g. ``"mm"`` after accumulating rates);
        default keeps them.

    Returns
    -------
    xarray.Dataset
        Resampled dataset (lazy if the input is).

    Raises
    ------
    ValueError
        Unknown ``how``, missing or undecoded time coordinate, or an invalid ``freq``.
    """
    if how not in HOW:
        raise ValueError(f"resample_time: unknown how={how!r}; valid: {list(HOW)}")
    if time_dim not in ds.dims or time_dim not in ds.coords:
        raise ValueError(f"resample_time: dataset {ds.encoding.get('source', '(in memory)')!r} "
                         f"has no {time_dim!r} coordinate to resample")
    tvals = ds[time_dim]
    if not (np.issubdtype(tvals.dtype, np.datetime64) or tvals.dtype == object):
        raise ValueError(f"resample_time: {time_dim!r} is not decoded to dates (units "
                         f"{tvals.attrs.get('units')!r}); open the file with decode_times=True")
    if not np.isfinite(scale):
        raise ValueError(f"resample_time: scale={scale!r} must be a finite number")
    step_text = _step_text(tvals)
    timed = [n for n, v in ds.data_vars.items() if time_dim in v.dims
             and np.issubdtype(v.dtype, np.number) and not str(n).endswith(("_bnds", "bounds"))]
    other = [n for n in ds.data_vars if n not in timed and time_dim not in ds[n].dims]
    try:
        resampler = ds[timed].resample({time_dim: freq}, label="left", closed="left")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"resample_time: invalid freq {freq!r} ({exc})") from exc
    if how == "sum":
        out = resampler.sum(skipna=False, min_count=1)
    elif how == "mean":
        out = resampler.mean(skipna=True)
    elif how == "min":
        out = resampler.min(skipna=True)
    else:
        out = resampler.max(skipna=True)
    if scale != 1.0:
        out = out * scale
    # Bounds: each period runs from its label to its label plus one freq.
    starts = out[time_dim].values
    offset = _to_offset(freq, out.indexes[time_dim])
    ends = np.array([offset(t) for t in starts], dtype=starts.dtype)
    out["time_bnds"] = xr.DataArray(np.stack([starts, ends], axis=1), dims=(time_dim, "bnds"))
    out[time_dim].attrs = {k: v for k, v in ds[time_dim].attrs.items()
                           if k not in ("bounds",)}
    out[time_dim].attrs["bounds"] = "time_bnds"
    out[time_dim].encoding = {k: v for k, v in ds[time_dim].encoding.items()
                              if k in ("units", "calendar")}
    out["time_bnds"].encoding = dict(out[time_dim].encoding)
    for name in timed:
        attrs: dict[str, Any] = dict(ds[name].attrs)
        interval = f" (interval: {step_text})" if step_text else ""
        cm = str(attrs.get("cell_methods", "")).strip()
        attrs["cell_methods"] = f"{cm} {time_dim}: {HOW[how]}{interval}".strip()
        if units is not None:
            attrs["units"] = units
        if scale != 1.0:
            attrs["hpc_workflows_time_scale_factor"] = float(scale)
        out[name].attrs = attrs
        out[name].encoding = {k: v for k, v in ds[name].encoding.items() if k == "dtype"}
    for name in other:
        out[name] = ds[name]
    out.attrs = dict(ds.attrs)
    out.attrs["hpc_workflows_time_resample"] = f"{freq} {how} scale={scale:g}"
    return out


def _to_offset(freq: str, index: Any) -> Any:
    """Callable adding one ``freq`` period to a timestamp (numpy datetime64 or cftime)."""
    if isinstance(index, xr.CFTimeIndex):
        from xarray.coding.cftime_offsets import to_offset

        off = to_offset(freq)
        return lambda t: t + off
    import pandas as pd

    off = pd.tseries.frequencies.to_offset(freq)
    return lambda t: (pd.Timestamp(t) + off).to_datetime64()
