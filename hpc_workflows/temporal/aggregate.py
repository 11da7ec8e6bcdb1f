"""Resampling in time that counts its samples, with CF ``cell_methods`` and time bounds.

:func:`aggregate_windows` reduces the input steps of each window (:mod:`.windows`) with ``how`` and
multiplies by ``scale``. The full conventions, with examples, are in docs/time.md; in short:

- Each window expects ``window length / input step`` steps. A grid cell's value is missing
  when fewer than ``min_sample_fraction`` of them are present and valid (default 1.0: a
  window with an absent time step or a NaN is missing, for every ``how``); an allowed
  incomplete ``sum`` is scaled up to the full window or kept as is (``partial_sum``).
- ``sample_count`` / ``expected_sample_count`` (per window; CF ``ancillary_variables`` of each
  result) record how many steps were present; the dataset attribute
  ``hpc_workflows_time_incomplete_windows`` says how many windows had fewer than expected.
- ``time_bnds`` is ``[start, end)``; the time coordinate is the start or the end
  (``label``); ``cell_methods`` gains ``time: <method> (interval: <step> comment: ...)``
  saying the input convention, the label and the completeness rule.

The reduction stays lazy on dask input (a groupby over window numbers that are computed
from the time coordinate alone), so memory follows the chunk size, not the file length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hpc_workflows.temporal.rules import HOW, TimeAggregation
from hpc_workflows.temporal.windows import Windows, infer_step, interval_starts, plan_windows

if TYPE_CHECKING:
    # Imported where datasets are built: a worker reads INCOMPLETE_ATTR from here on every
    # file, and xarray costs ~0.13 s in a process that writes without it (issue 13).
    import xarray as xr

__all__ = ["HOW", "INCOMPLETE_ATTR", "aggregate_windows", "check_time", "resample_time"]

INCOMPLETE_ATTR = "hpc_workflows_time_incomplete_windows"
_WINDOW = "_window"


def resample_time(ds: xr.Dataset, freq: str, how: str = "mean", scale: float = 1.0, *,
                  time_dim: str = "time", units: str | None = None,
                  **rules: Any) -> xr.Dataset:
    """Resample ``ds`` in time; shorthand for :func:`aggregate_windows` with a new rule set.

    Parameters
    ----------
    ds
        Dataset with a decoded (datetime or cftime) ``time_dim`` coordinate.
    freq, how, scale, units
        As :class:`~hpc_workflows.temporal.rules.TimeAggregation`.
    time_dim
        Name of the time dimension.
    **rules
        Further :class:`~hpc_workflows.temporal.rules.TimeAggregation` fields
        (``input_step``, ``input_interval``, ``label``, ``offset``, ``min_sample_fraction``,
        ``partial_sum``).

    Returns
    -------
    xarray.Dataset
        Resampled dataset (lazy if the input is).

    Raises
    ------
    ValueError
        Invalid rules, a missing or undecoded time coordinate, or irregular times.
    """
    try:
        agg = TimeAggregation(freq=freq, how=how, scale=scale, units=units, **rules)
    except ValueError as exc:
        raise ValueError(f"resample_time: {exc}") from exc
    return aggregate_windows(ds, agg, time_dim=time_dim)


def check_time(ds: xr.Dataset, time_dim: str = "time") -> np.ndarray:
    """The decoded time values of ``ds``; ValueError saying the fix if there are none."""
    if time_dim not in ds.dims or time_dim not in ds.coords:
        raise ValueError(f"{_name(ds)}: no {time_dim!r} coordinate to aggregate in time")
    tvals = ds[time_dim]
    if not (np.issubdtype(tvals.dtype, np.datetime64) or tvals.dtype == object):
        raise ValueError(f"{_name(ds)}: {time_dim!r} is not decoded to dates (units "
                         f"{tvals.attrs.get('units')!r}); open the file with decode_times=True")
    return np.asarray(tvals.values)


def aggregate_windows(ds: xr.Dataset, agg: TimeAggregation, *, windows: Windows | None = None,
              step: float | None = None, time_dim: str = "time") -> xr.Dataset:
    """Reduce the time steps of ``ds`` window by window, counting what each window got.

    Parameters
    ----------
    ds
        Input with a decoded ``time_dim``; may hold steps from neighbouring files too.
    agg
        The rules.
    windows
        The windows to produce (default: planned from ``ds``'s own times). Steps outside
        them are ignored; windows without steps come out missing with ``sample_count`` 0.
    step
        Input step in seconds (default: ``agg.input_step`` or inferred from ``ds``).
    time_dim
        Name of the time dimension.

    Returns
    -------
    xarray.Dataset
        One step per window; see the module docstring for the variables and attributes.
    """
    import xarray as xr

    times = check_time(ds, time_dim)
    if step is None:
        step = infer_step(times, agg.input_step, _name(ds))
    starts = interval_starts(times, step, agg.input_interval)
    if windows is None:
        windows = plan_windows(starts, agg, step, source=_name(ds))
    index = windows.index_of(starts)
    inside = index >= 0
    present = np.bincount(index[inside], minlength=len(windows))
    over = np.nonzero(present > windows.expected)[0]
    if over.size:
        i = int(over[0])
        raise ValueError(
            f"{_name(ds)}: window {windows.starts[i]} holds {present[i]} time steps but "
            f"{windows.expected[i]} fit in it at a {step:g} s step: the input has duplicate "
            "times or time_aggregation.input_step is too long")
    timed = [n for n, v in ds.data_vars.items() if time_dim in v.dims
             and np.issubdtype(v.dtype, np.number) and not str(n).endswith(("_bnds", "bounds"))]
    other = [n for n in ds.data_vars if n not in timed and time_dim not in ds[n].dims]
    data = ds[timed].isel({time_dim: np.nonzero(inside)[0]})
    groups = xr.DataArray(index[inside], dims=time_dim, name=_WINDOW)
    every = np.arange(len(windows))
    expected = xr.DataArray(windows.expected.astype(np.float64), dims=_WINDOW)

    valid = data.notnull().groupby(groups).sum().reindex({_WINDOW: every}, fill_value=0)
    enough = (valid >= agg.min_sample_fraction * expected - 1e-9) & (valid > 0)
    grouped = data.groupby(groups)
    if agg.how in ("sum", "mean"):
        total = grouped.sum(skipna=True).reindex({_WINDOW: every})
        some = valid.where(valid > 0)  # no division by zero where a cell has no valid step
        if agg.how == "mean":
            reduced = total / some
        elif agg.partial_sum == "scale_up":
            reduced = total * (expected / some)
        else:
            reduced = total
    else:
        reduced = getattr(grouped, agg.how)(skipna=True).reindex({_WINDOW: every})
    out = reduced.where(enough)
    if agg.scale != 1.0:
        out = out * agg.scale
    return _describe(out, ds, timed, other, agg, windows, present, step, time_dim)


def _describe(out: xr.Dataset, ds: xr.Dataset, timed: list[str], other: list[str],
              agg: TimeAggregation, windows: Windows, present: np.ndarray, step: float,
              time_dim: str) -> xr.Dataset:
    """Time coordinate, bounds, sample counts and CF attributes of the result."""
    import xarray as xr

    label = windows.starts if agg.label == "start" else windows.ends
    out = out.rename({_WINDOW: time_dim}).assign_coords({time_dim: label})
    out["time_bnds"] = xr.DataArray(np.stack([windows.starts, windows.ends], axis=1),
                                    dims=(time_dim, "bnds"))
    out["sample_count"] = xr.DataArray(present.astype(np.int32), dims=time_dim, attrs={
        "long_name": "number of input time steps present in the window",
        "standard_name": "number_of_observations", "units": "1"})
    out["expected_sample_count"] = xr.DataArray(windows.expected.astype(np.int32), dims=time_dim,
                                                attrs={"long_name": "number of input time steps "
                                                       "a complete window holds", "units": "1"})
    out[time_dim].attrs = {k: v for k, v in ds[time_dim].attrs.items() if k != "bounds"}
    out[time_dim].attrs["bounds"] = "time_bnds"
    out[time_dim].encoding = {k: v for k, v in ds[time_dim].encoding.items()
                              if k in ("units", "calendar")}
    out["time_bnds"].encoding = dict(out[time_dim].encoding)
    comment = _comment(agg, step)
    for name in timed:
        attrs: dict[str, Any] = dict(ds[name].attrs)
        cm = str(attrs.get("cell_methods", "")).strip()
        attrs["cell_methods"] = (f"{cm} {time_dim}: {HOW[agg.how]} "
                                 f"(interval: {step:g} seconds comment: {comment})").strip()
        ancillary = str(attrs.get("ancillary_variables", "")).split()
        attrs["ancillary_variables"] = " ".join(ancillary + ["sample_count", "expected_sample_count"])
        if agg.units is not None and agg.units != attrs.get("units"):
            attrs["units"] = agg.units
            # A rate summed into an amount is no longer a rainfall_rate: keep the old name
            # only as words, unless the rules name the new quantity.
            old = attrs.pop("standard_name", None)
            if old and "long_name" not in attrs:
                attrs["long_name"] = f"{old.replace('_', ' ')}, {agg.how} over time"
        if agg.standard_name is not None:
            attrs["standard_name"] = agg.standard_name
        if agg.scale != 1.0:
            attrs["hpc_workflows_time_scale_factor"] = float(agg.scale)
        out[name].attrs = attrs
        # "coordinates" ties the variable to its own scalar coordinates only (xarray would
        # tie every one of the file's to it): the regridder keeps those still present.
        out[name].encoding = {k: v for k, v in ds[name].encoding.items()
                              if k in ("dtype", "coordinates")}
    for name in other:
        out[name] = ds[name]
    out.attrs = dict(ds.attrs)
    out.attrs["hpc_workflows_time_resample"] = (
        f"{agg.freq} {agg.how} scale={agg.scale:g} offset={agg.offset or '0'} "
        f"input={agg.input_interval} label={agg.label} "
        f"min_sample_fraction={agg.min_sample_fraction:g} partial_sum={agg.partial_sum}")
    out.attrs[INCOMPLETE_ATTR] = int(np.count_nonzero(present < windows.expected))
    return out


def _comment(agg: TimeAggregation, step: float) -> str:
    inputs = {"instant": "inputs instantaneous",
              "ending": f"inputs over the {step:g} s ending at their time",
              "starting": f"inputs over the {step:g} s starting at their time"}[agg.input_interval]
    rule = f"cells need {agg.min_sample_fraction * 100:.4g}% of the expected steps, else missing"
    if agg.how == "sum" and agg.min_sample_fraction < 1:
        rule += ("; partial sums scaled to the full window" if agg.partial_sum == "scale_up"
                 else "; partial sums not scaled")
    return f"{inputs}; windows [start, end) labelled at {agg.label}; {rule}"


def _name(ds: xr.Dataset) -> str:
    return str(ds.encoding.get("source", "(in memory)"))
