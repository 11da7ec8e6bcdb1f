"""Checksums: parsing ``"sha256:<hex>"`` strings, hashing files in chunks, reading sidecars."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: Algorithms accepted in checksum strings and sidecars, with their hex-digest length.
ALGORITHMS: dict[str, int] = {"sha256": 64, "md5": 32}
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_CHUNK = 1 << 20


def parse_checksum(text: str) -> tuple[str, str]:
    """Split ``"sha256:<hex>"`` / ``"md5:<hex>"`` into ``(algorithm, lowercase hex)``.

    Parameters
    ----------
    text : str
        The checksum string.

    Returns
    -------
    tuple of str
        Algorithm name and hex digest.

    Raises
    ------
    ValueError
        If the format, algorithm or digest length is wrong (the message says the valid forms).
    """
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(
            f"checksum {text!r} is not of the form 'sha256:<64 hex digits>' or 'md5:<32 hex digits>'"
        )
    algorithm, _, digest = text.partition(":")
    algorithm = algorithm.strip().lower()
    digest = digest.strip()
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"checksum {text!r} uses unknown algorithm {algorithm!r}; use one of "
            + ", ".join(f"'{a}:<hex>'" for a in ALGORITHMS)
        )
    if len(digest) != ALGORITHMS[algorithm] or not _HEX_RE.match(digest):
        raise ValueError(
            f"checksum {text!r}: a {algorithm} digest must be {ALGORITHMS[algorithm]} hex digits"
        )
    return algorithm, digest.lower()


def new_hashers(algorithms: set[str] | frozenset[str]) -> dict[str, "hashlib._Hash"]:
    """Return fresh hash objects for ``algorithms`` (sha256 is always included)."""
    return {name: hashlib.new(name) for name in sorted(set(algorithms) | {"sha256"})}


def update_from_file(hashers: dict, path: Path, limit: int | None = None) -> int:
    """Feed the first ``limit`` bytes (all when None) of ``path`` into ``hashers``; return bytes read."""
    done = 0
    with open(path, "rb") as fh:
        while limit is None or done < limit:
            want = _CHUNK if limit is None else min(_CHUNK, limit - done)
            block = fh.read(want)
            if not block:
                break
            for h in hashers.values():
                h.update(block)
            done += len(block)
    return done


def file_digests(path: Path, algorithms: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """Hash ``path`` once in chunks with every algorithm in ``algorithms`` plus sha256.

    Returns
    -------
    dict
        ``{algorithm: hexdigest}``.
    """
    hashers = new_hashers(algorithms)
    update_from_file(hashers, Path(path))
    return {name: h.hexdigest() for name, h in hashers.items()}


def sha256_file(path: Path) -> str:
    """Return the sha256 hex digest of ``path``, read in 1 MiB chunks (constant memory).

    Parameters
    ----------
    path : Path
        File to hash.

    Returns
    -------
    str
        Lowercase hex digest.
    """
    return file_digests(Path(path))["sha256"]


def parse_sidecar(text: str, algorithm: str, filename: str) -> str:
    """Extract the digest for ``filename`` from a ``.sha256``/``.md5`` sidecar file's text.

    Accepts the bare-digest form and the ``sha256sum``/``md5sum`` output form
    (``<hex>  name`` or ``<hex> *name``), with one or several lines.

    Returns
    -------
    str
        ``"<algorithm>:<hex>"``.

    Raises
    ------
    ValueError
        If no digest for the file can be found or its format is wrong.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise ValueError(f"{algorithm} sidecar for {filename!r} is empty")
    chosen = None
    if len(lines) == 1:
        chosen = lines[0].split()[0]
    else:
        for line in lines:
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].lstrip("*") == filename:
                chosen = parts[0]
                break
    if chosen is None:
        raise ValueError(f"{algorithm} sidecar has no line for {filename!r}")
    checksum = f"{algorithm}:{chosen}"
    parse_checksum(checksum)
    return checksum
