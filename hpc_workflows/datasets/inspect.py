"""What a scientist checks first about an output: per-variable figures, checks and a preview.

Plain Python (netCDF4, numpy, matplotlib); the assets put the results in each partition's
metadata. Everything streams one time step at a time, so the cost does not grow with the
length of the file beyond one pass.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from hpc_workflows.netcdf_lock import NETCDF_LOCK

__all__ = ["CheckOutcome", "check_output", "output_figures", "preview_png"]

_COORDS_LIKE = ("_bnds", "_bounds")


def _data_variables(ds: Any) -> list[str]:
    coords = set(ds.dimensions)
    bounds = {getattr(v, "bounds", None) for v in ds.variables.values()}
    named = set()
    for v in ds.variables.values():
        named.update(str(getattr(v, "coordinates", "")).split())
        named.update(str(getattr(v, "ancillary_variables", "")).split())
    return [n for n, v in ds.variables.items()
            if n not in coords and n not in bounds and n not in named and v.ndim >= 2
            and not n.endswith(_COORDS_LIKE) and np.issubdtype(v.dtype, np.number)]


def output_figures(path: str | Path) -> dict[str, Any]:
    """Per data variable: min, mean, max and valid fraction; plus the weights hash if recorded.

    Returns
    -------
    dict
        ``{"<var>.min": ..., "<var>.mean": ..., "<var>.max": ..., "<var>.valid_fraction": ...,
        "weights_hash": ...}``; NaN-free (None where nothing is valid).
    """
    import netCDF4

    out: dict[str, Any] = {}
    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        for attr in ("weights_hash", "regrid_weights_hash", "hpc_workflows_weights_hash"):
            if attr in ds.ncattrs():
                out["weights_hash"] = str(ds.getncattr(attr))
        for name in _data_variables(ds):
            var = ds.variables[name]
            var.set_auto_maskandscale(True)
            lo, hi, total, count, size = math.inf, -math.inf, 0.0, 0, 0
            steps = var.shape[0] if var.ndim >= 3 else 1
            for i in range(steps):
                block = np.ma.filled(np.ma.masked_invalid(var[i] if var.ndim >= 3 else var[:]).astype("f8"), np.nan)
                valid = np.isfinite(block)
                size += block.size
                n = int(valid.sum())
                if n:
                    vals = block[valid]
                    lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
                    total += float(vals.sum())
                    count += n
            out[f"{name}.min"] = lo if count else None
            out[f"{name}.mean"] = total / count if count else None
            out[f"{name}.max"] = hi if count else None
            out[f"{name}.valid_fraction"] = round(count / size, 6) if size else 0.0
    return out


class CheckOutcome(dict):
    """Check name -> (passed, description)."""


def check_output(path: str | Path, figures: dict[str, Any] | None = None) -> CheckOutcome:
    """The per-partition checks: opens, carries CF conventions, not all missing.

    (Conservation is checked by the regridder itself when ``check_area_means`` is on; its
    figures are in the output metadata.)
    """
    import netCDF4

    outcome = CheckOutcome()
    try:
        with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
            conventions = str(getattr(ds, "Conventions", ""))
            has_vars = bool(_data_variables(ds))
    except OSError as exc:
        outcome["opens"] = (False, f"{path} does not open as netCDF: {exc}")
        return outcome
    outcome["opens"] = (True, "opens as netCDF")
    outcome["cf_conventions"] = (conventions.startswith("CF-"), f"Conventions = {conventions!r}")
    figures = figures if figures is not None else output_figures(path)
    fractions = {k[:-len('.valid_fraction')]: v for k, v in figures.items() if k.endswith(".valid_fraction")}
    empty = sorted(k for k, v in fractions.items() if not v)
    outcome["not_all_missing"] = (has_vars and not empty,
                                  f"all missing: {', '.join(empty)}" if empty else "every variable has valid data")
    return outcome


def preview_png(path: str | Path, *, width_px: int = 360) -> bytes | None:
    """A small map of the first time step of the first data variable, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import netCDF4

    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        names = _data_variables(ds)
        if not names:
            return None
        var = ds.variables[names[0]]
        field = np.ma.masked_invalid(np.asarray(np.ma.filled(var[0] if var.ndim >= 3 else var[:], np.nan), "f8"))
        while field.ndim > 2:
            field = field[0]
        lat = ds.variables["lat"][:] if "lat" in ds.variables else np.arange(field.shape[0])
        lon = ds.variables["lon"][:] if "lon" in ds.variables else np.arange(field.shape[1])
        title = f"{names[0]} ({getattr(var, 'units', '')}) first step"
    fig, ax = plt.subplots(figsize=(width_px / 90, width_px / 90 * 0.62), dpi=90)
    mesh = ax.pcolormesh(np.asarray(lon), np.asarray(lat), field, shading="auto")
    fig.colorbar(mesh, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
