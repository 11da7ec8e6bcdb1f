"""Regridding weights: build once per (source grid, target grid, method), cache in netCDF.

A :class:`Weights` object holds either two sparse factors (``lat_factor`` ``A`` and
``lon_factor`` ``B``, for separable methods on lat/lon pairs: ``out = A @ x @ B.T``) or one
sparse matrix (``matrix`` ``W``: ``out_flat = W @ x_flat``). Every row of the weights of a
fully covered target cell sums to 1.

Cache files are named ``weights_<method>_<key[:32]>.nc`` where ``key`` is the SHA-256 of both
grid hashes, the method and the file-format version. A file is used only if it opens, its
``weights_key`` attribute equals the expected key, its shapes match, and the SHA-256 of its
arrays equals the ``content_sha256`` stored at write time; otherwise it is rebuilt and
replaced (atomically, so concurrent workers never read a half-written file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["Weights", "weights_key", "load_or_build_weights", "save_weights", "load_weights"]

log = logging.getLogger(__name__)

WEIGHTS_FORMAT_VERSION = "1"


@dataclass
class Weights:
    """Sparse regridding weights (see module docstring)."""

    method: str
    key: str
    source_shape: tuple[int, int]
    target_shape: tuple[int, int]
    lat_factor: sp.csr_matrix | None = None
    lon_factor: sp.csr_matrix | None = None
    matrix: sp.csr_matrix | None = None
    build_seconds: float = 0.0
    load_seconds: float = 0.0
    from_cache: bool = False
    _cast: dict = field(default_factory=dict, repr=False)

    def factors(self, dtype: np.dtype) -> tuple:
        """(lat_factor, lon_factor) or (matrix,) with values cast to ``dtype`` (cached)."""
        key = np.dtype(dtype).str
        if key not in self._cast:
            parts = (self.lat_factor, self.lon_factor) if self.separable else (self.matrix,)
            self._cast[key] = tuple(m.astype(dtype) for m in parts)
        return self._cast[key]

    @property
    def separable(self) -> bool:
        """True when stored as a latitude and a longitude factor."""
        return self.matrix is None

    def coverage(self) -> np.ndarray:
        """Fraction (target shape) of each target cell reached by source weights."""
        if self.separable:
            a = np.asarray(self.lat_factor.sum(axis=1)).ravel()
            b = np.asarray(self.lon_factor.sum(axis=1)).ravel()
            return np.outer(a, b)
        return np.asarray(self.matrix.sum(axis=1)).reshape(self.target_shape)

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        parts = ({"lat": self.lat_factor, "lon": self.lon_factor} if self.separable
                 else {"w": self.matrix})
        for prefix, m in parts.items():
            coo = m.tocoo()
            out[f"{prefix}_row"] = coo.row.astype(np.int32)
            out[f"{prefix}_col"] = coo.col.astype(np.int32)
            out[f"{prefix}_S"] = coo.data.astype(np.float64)
        return out


def weights_key(source_hash: str, target_hash: str, method: str) -> str:
    """SHA-256 identifying a (source grid, target grid, method) triple."""
    text = f"{source_hash}|{target_hash}|{method}|v{WEIGHTS_FORMAT_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()


def _content_hash(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def weights_path(weights_dir: Path, method: str, key: str) -> Path:
    """Cache file path for the given method and key."""
    return Path(weights_dir) / f"weights_{method}_{key[:32]}.nc"


def save_weights(w: Weights, path: Path) -> Path:
    """Write ``w`` to ``path`` atomically as netCDF with a content checksum."""
    import xarray as xr

    from hpc_workflows import __version__
    from hpc_workflows.write.netcdf import write_netcdf_atomic

    arrays = w._arrays()
    data_vars = {}
    for name, arr in arrays.items():
        data_vars[name] = ((f"n_{name.split('_')[0]}",), arr)
    ds = xr.Dataset(data_vars)
    ds.attrs.update(
        title="hpc_workflows regridding weights",
        weights_key=w.key,
        method=w.method,
        format_version=WEIGHTS_FORMAT_VERSION,
        separable=int(w.separable),
        source_shape=np.asarray(w.source_shape, dtype=np.int64),
        target_shape=np.asarray(w.target_shape, dtype=np.int64),
        content_sha256=_content_hash(arrays),
        hpc_workflows_version=__version__,
    )
    encoding = {name: {"_FillValue": None} for name in arrays}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several workers may build the same weights at once: each writes its own uniquely
    # named file (atomically) and renames it over the final name, so no reader ever sees a
    # mixture and the last complete file wins.
    unique = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.nc")
    try:
        write_netcdf_atomic(ds, unique, compression_level=0, encoding=encoding)
        os.replace(unique, path)
    finally:
        unique.unlink(missing_ok=True)
    return path


class WeightsFileError(ValueError):
    """A weights file is unreadable, stale (other grids/method) or corrupt."""


def load_weights(path: Path, key: str, method: str, source_shape: tuple[int, int],
                 target_shape: tuple[int, int]) -> Weights:
    """Read and verify a weights file; raise :class:`WeightsFileError` if it cannot be used."""
    import netCDF4

    t0 = time.perf_counter()
    try:
        with netCDF4.Dataset(path) as nc:
            attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
            arrays = {name: np.asarray(var[:].data if np.ma.isMaskedArray(var[:]) else var[:])
                      for name, var in nc.variables.items()}
    except Exception as exc:  # corrupt/truncated files raise OSError, RuntimeError, ...
        raise WeightsFileError(f"weights file {str(path)!r} is unreadable ({exc})") from exc
    if attrs.get("weights_key") != key or attrs.get("method") != method:
        raise WeightsFileError(f"weights file {str(path)!r} is stale (built for other grids "
                               "or another method)")
    if str(attrs.get("format_version")) != WEIGHTS_FORMAT_VERSION:
        raise WeightsFileError(f"weights file {str(path)!r} has an old format version")
    if (tuple(np.atleast_1d(attrs.get("source_shape", []))) != tuple(source_shape)
            or tuple(np.atleast_1d(attrs.get("target_shape", []))) != tuple(target_shape)):
        raise WeightsFileError(f"weights file {str(path)!r} has the wrong grid shapes")
    if _content_hash(arrays) != attrs.get("content_sha256"):
        raise WeightsFileError(f"weights file {str(path)!r} is corrupt (checksum mismatch)")
    ny_s, nx_s = source_shape
    ny_t, nx_t = target_shape
    try:
        if int(attrs["separable"]):
            a = sp.csr_matrix((arrays["lat_S"], (arrays["lat_row"], arrays["lat_col"])),
                              shape=(ny_t, ny_s))
            b = sp.csr_matrix((arrays["lon_S"], (arrays["lon_row"], arrays["lon_col"])),
                              shape=(nx_t, nx_s))
            w = Weights(method, key, tuple(source_shape), tuple(target_shape), a, b)
        else:
            m = sp.csr_matrix((arrays["w_S"], (arrays["w_row"], arrays["w_col"])),
                              shape=(ny_t * nx_t, ny_s * nx_s))
            w = Weights(method, key, tuple(source_shape), tuple(target_shape), matrix=m)
    except (KeyError, ValueError, IndexError) as exc:
        raise WeightsFileError(f"weights file {str(path)!r} is corrupt ({exc})") from exc
    w.load_seconds = time.perf_counter() - t0
    w.from_cache = True
    return w


def load_or_build_weights(source: Any, target: Any, method: str, build: Any,
                          weights_dir: Path | None) -> Weights:
    """Return cached weights when valid, else build (and cache when ``weights_dir`` is set).

    Parameters
    ----------
    source, target
        Grids with ``grid_hash()`` and ``shape``.
    method
        Method name (part of the key).
    build
        Callable ``build(source, target) -> Weights`` (the key is filled in here).
    weights_dir
        Cache folder, or ``None`` to always build in memory.
    """
    key = weights_key(source.grid_hash(), target.grid_hash(), method)
    path = weights_path(weights_dir, method, key) if weights_dir is not None else None
    if path is not None and path.exists():
        try:
            return load_weights(path, key, method, source.shape, target.shape)
        except WeightsFileError as exc:
            log.warning("%s; rebuilding it", exc)
    t0 = time.perf_counter()
    w = build(source, target)
    w.key = key
    w.method = method
    w.build_seconds = time.perf_counter() - t0
    if path is not None:
        try:
            save_weights(w, path)
        except OSError as exc:  # e.g. a read-only shared folder: still regrid, say so
            log.warning("could not save weights to %s (%s); continuing without the cache",
                        path, exc)
    return w
