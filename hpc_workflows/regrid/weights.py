"""Regridding weights: build once per (source grid, target grid, method), cache in netCDF.

A :class:`Weights` object holds either two sparse factors (``lat_factor`` ``A`` and
``lon_factor`` ``B``, for separable methods on lat/lon pairs: ``out = A @ x @ B.T``) or one
sparse matrix (``matrix`` ``W``: ``out_flat = W @ x_flat``). Every row of the weights of a
fully covered target cell sums to 1. The builders make scipy.sparse matrices; they are kept
as :class:`~hpc_workflows.regrid.sparse_rows.SparseRows`, so loading cached weights and
applying them never imports scipy (see that module for why).

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
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpc_workflows.netcdf_lock import NETCDF_LOCK
from hpc_workflows.regrid.sparse_rows import SparseRows

__all__ = ["Weights", "weights_key", "load_or_build_weights", "save_weights", "load_weights"]

log = logging.getLogger(__name__)

WEIGHTS_FORMAT_VERSION = "1"


@dataclass
class Weights:
    """Sparse regridding weights (see module docstring).

    The factors may be given as scipy.sparse matrices (what the builders make); they are
    converted to :class:`SparseRows` on construction.
    """

    method: str
    key: str
    source_shape: tuple[int, int]
    target_shape: tuple[int, int]
    lat_factor: SparseRows | None = None
    lon_factor: SparseRows | None = None
    matrix: SparseRows | None = None
    build_seconds: float = 0.0
    load_seconds: float = 0.0
    from_cache: bool = False
    #: Per-object scratch for :mod:`hpc_workflows.regrid.apply` (normalisers, last mask).
    scratch: dict = field(default_factory=dict, repr=False, compare=False)
    #: Per-thread buffers of :meth:`product` (not pickled).
    _local: threading.local = field(default_factory=threading.local, repr=False,
                                    compare=False)

    def __post_init__(self) -> None:
        for name in ("lat_factor", "lon_factor", "matrix"):
            m = getattr(self, name)
            if m is not None and not isinstance(m, SparseRows):
                setattr(self, name, SparseRows.from_scipy(m))

    def __getstate__(self) -> dict[str, Any]:  # scratch is rebuilt where the copy is used
        return {k: v for k, v in self.__dict__.items() if k != "_local"} | {"scratch": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def separable(self) -> bool:
        """True when stored as a latitude and a longitude factor."""
        return self.matrix is None

    @property
    def nnz(self) -> int:
        """Stored entries (both factors, or the matrix)."""
        parts = (self.lat_factor, self.lon_factor) if self.separable else (self.matrix,)
        return sum(p.nnz for p in parts)

    def coverage(self) -> np.ndarray:
        """Fraction (target shape) of each target cell reached by source weights."""
        if self.separable:
            return np.outer(self.lat_factor.row_sums(), self.lon_factor.row_sums())
        return self.matrix.row_sums().reshape(self.target_shape)

    def product(self, x: np.ndarray, dtype: type) -> np.ndarray:
        """The weighted sums ``W @ x`` for ``x`` of shape (m, ny, nx), computed in ``dtype``.

        No normalisation and no missing-data handling: a NaN in ``x`` reaches every target
        cell whose weights touch it (and possibly neighbours through padding; see
        :mod:`~hpc_workflows.regrid.sparse_rows`).

        Returns
        -------
        numpy.ndarray
            (m, nyt, nxt) in ``dtype``.
        """
        m = x.shape[0]
        if self.separable:
            # Latitude first on the full-size field (banded BLAS), then longitude on the
            # (m, nyt, nx) intermediate, which is 1/4 to 1/100 the size of the input. The
            # intermediate is a buffer of this thread, reused from call to call: a fresh one
            # costs a page fault and zeroing per 4 KiB before any arithmetic.
            shape, dt = (m, self.target_shape[0], x.shape[-1]), np.dtype(dtype)
            y = getattr(self._local, "y", None)
            if y is None or y.shape != shape or y.dtype != dt:
                y = self._local.y = np.empty(shape, dtype=dt)
            self.lat_factor.left_apply(x, dtype, out=y)
            return self.lon_factor.right_apply(y, dtype)
        flat = x.reshape(m, -1)
        return self.matrix.right_apply(flat, dtype).reshape((m,) + tuple(self.target_shape))

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        parts = ({"lat": self.lat_factor, "lon": self.lon_factor} if self.separable
                 else {"w": self.matrix})
        for prefix, m in parts.items():
            out[f"{prefix}_row"], out[f"{prefix}_col"], out[f"{prefix}_S"] = m.to_coo()
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
        with NETCDF_LOCK, netCDF4.Dataset(path) as nc:
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
            a = SparseRows.from_coo(arrays["lat_row"], arrays["lat_col"], arrays["lat_S"],
                                    (ny_t, ny_s))
            b = SparseRows.from_coo(arrays["lon_row"], arrays["lon_col"], arrays["lon_S"],
                                    (nx_t, nx_s))
            w = Weights(method, key, tuple(source_shape), tuple(target_shape), a, b)
        else:
            m = SparseRows.from_coo(arrays["w_row"], arrays["w_col"], arrays["w_S"],
                                    (ny_t * nx_t, ny_s * nx_s))
            w = Weights(method, key, tuple(source_shape), tuple(target_shape), matrix=m)
    except (KeyError, ValueError, IndexError) as exc:
        raise WeightsFileError(f"weights file {str(path)!r} is corrupt ({exc})") from exc
    w.load_seconds = time.perf_counter() - t0
    w.from_cache = True
    return w


# Weights read and verified by this process, most recent last: a batch of files on one grid
# read and checksummed the same file once per file (about 8 ms per small file, more than the
# regridding itself). An entry is used only while the file has the same inode, size, mtime
# and ctime as when it was verified: a rebuilt file (written aside, renamed over) or one
# changed in place is read and verified again. Two entries: the memory a batch held anyway.
_VERIFIED: OrderedDict[tuple, tuple[tuple, Weights]] = OrderedDict()
_VERIFIED_KEEP = 2
_VERIFIED_LOCK = threading.Lock()


def _file_signature(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _load_weights_once(path: Path, key: str, method: str, source_shape: tuple[int, int],
                       target_shape: tuple[int, int]) -> Weights:
    """:func:`load_weights`, reusing this process's verified copy of an unchanged file."""
    ident = (str(path), key, method, tuple(source_shape), tuple(target_shape))
    signature = _file_signature(path)
    with _VERIFIED_LOCK:
        found = _VERIFIED.get(ident)
        if found is not None and signature is not None and found[0] == signature:
            _VERIFIED.move_to_end(ident)
            return found[1]
    w = load_weights(path, key, method, source_shape, target_shape)
    # The file may have been replaced while it was read: keep it only if still the same.
    if signature is not None and _file_signature(path) == signature:
        with _VERIFIED_LOCK:
            _VERIFIED[ident] = (signature, w)
            _VERIFIED.move_to_end(ident)
            while len(_VERIFIED) > _VERIFIED_KEEP:
                _VERIFIED.popitem(last=False)
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
            return _load_weights_once(path, key, method, source.shape, target.shape)
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
