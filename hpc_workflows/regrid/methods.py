"""Method names and the weight builder behind each (no xarray needed)."""

from __future__ import annotations

from pathlib import Path

from hpc_workflows.regrid.errors import RegridError
from hpc_workflows.regrid.grids import SourceGrid
from hpc_workflows.regrid.targets import TargetGrid
from hpc_workflows.regrid.weights import Weights, load_or_build_weights

__all__ = ["METHODS", "WEIGHT_BUILDERS", "build_weights", "check_method"]

METHODS = ("conservative", "bilinear", "nearest", "aggregate")


def _build_conservative(source: SourceGrid, target: TargetGrid) -> Weights:
    if source.kind != "latlon":
        # Cells given by corners: exact spherical polygon overlaps (as CDO remapcon).
        from hpc_workflows.regrid.spherical import overlap_matrix

        m = overlap_matrix(source.lat_bnds, source.lon_bnds, target.lat_bnds,
                           target.lon_bnds, target.lon)
        return Weights("conservative", "", source.shape, target.shape, matrix=m)
    from hpc_workflows.regrid.conservative import lat_overlap_factor, lon_overlap_factor

    a = lat_overlap_factor(target.lat_bnds, source.lat_bnds)
    b = lon_overlap_factor(target.lon_bnds, source.lon_bnds, target.lon, source.lon)
    return Weights("conservative", "", source.shape, target.shape, a, b)


def _build_bilinear(source: SourceGrid, target: TargetGrid) -> Weights:
    from hpc_workflows.regrid.bilinear import bilinear_weights

    return bilinear_weights(source, target)


def _build_nearest(source: SourceGrid, target: TargetGrid) -> Weights:
    from hpc_workflows.regrid.nearest import nearest_weights

    return nearest_weights(source, target)


WEIGHT_BUILDERS = {
    "conservative": _build_conservative,
    "bilinear": _build_bilinear,
    "nearest": _build_nearest,
}


def check_method(method: str, statistics: list[str] | None = None) -> None:
    """Raise :class:`RegridError` for an unknown method or misplaced ``statistics``."""
    if method not in METHODS:
        raise RegridError(f"unknown regridding method {method!r}; valid methods: {list(METHODS)}")
    if statistics is not None and method != "aggregate":
        raise RegridError(f"'statistics' is only used by method 'aggregate', not {method!r}")


def build_weights(source: SourceGrid, target: TargetGrid, method: str,
                  weights_dir: Path | None = None) -> Weights:
    """Weights for ``method`` between two grids, from the cache in ``weights_dir`` if valid."""
    if method not in WEIGHT_BUILDERS:
        raise RegridError(f"unknown regridding method {method!r} for weights; valid: "
                          f"{list(WEIGHT_BUILDERS)}")
    if method == "conservative" and source.kind != "latlon" and source.lat_bnds is None:
        raise RegridError(
            f"method 'conservative' from a {source.kind} grid needs its cell corners (a "
            "'bounds' attribute on the 2-D latitude/longitude naming (y, x, 4) corners); "
            "add them, or use 'bilinear', 'nearest' or 'aggregate'")
    return load_or_build_weights(source, target, method, WEIGHT_BUILDERS[method],
                                 Path(weights_dir) if weights_dir is not None else None)


def provenance_attrs(method: str, key: str, target: TargetGrid, grid: SourceGrid,
                     min_valid_fraction: float, source_file: str | None) -> dict[str, object]:
    """Global attributes recording how the output was regridded."""
    from hpc_workflows import __version__

    attrs: dict[str, object] = {
        "hpc_workflows_regrid_method": method,
        "hpc_workflows_regrid_weights_sha256": key,
        "hpc_workflows_regrid_target_grid": target.spec,
        "hpc_workflows_regrid_source_grid": f"{grid.kind} {grid.shape[0]}x{grid.shape[1]}"
        + (" (bounds derived from centres)" if grid.bounds_derived else ""),
        "hpc_workflows_regrid_min_valid_fraction": float(min_valid_fraction),
        "hpc_workflows_version": __version__,
    }
    if source_file:
        attrs["hpc_workflows_regrid_source_file"] = str(source_file)
    return attrs
