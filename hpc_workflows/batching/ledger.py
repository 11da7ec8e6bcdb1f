"""The completion ledger: which outputs are already complete and verified, without opening them.

One JSON-lines file per output folder (``.hpc_workflows_ledger.jsonl``). The code that writes an
output (:func:`hpc_workflows.batching.files.process_file`) appends one line once the output is
written and verified::

    {"name": "tas_20200214.nc", "size": 51234, "mtime_ns": 1700000000123456789,
     "settings": "<sha256 of the regrid/output settings>",
     "source": "<url with credentials masked>|<expected checksum or empty>",
     "input_sha256": "...", "sha256": "<sha256 of the output>", "recorded": "2026-12-02T12:00:00Z"}

**The completion rule** (:meth:`Ledger.completed`, the one definition used by the batch job's
planning, by every batch before it fetches a file, and later by the date-partitioned assets):
an output is complete when the newest ledger line for its file name has the settings hash and
source identity this run would use, and the file on disk has exactly the recorded size and
``mtime_ns``. That costs one ``stat`` per output (10,958 outputs: well under a second),
never a netCDF open. Deleting, rewriting or truncating an output, changing the settings, or
pointing the source elsewhere makes it incomplete again. An output without a ledger line (an
older version wrote it, or someone copied it in) is not complete by this rule: the batch
fetches its source once, lets the output's own stamp (input sha256 + settings hash,
``preprocess_file``) decide, and records it. The sha256 of each output is kept so that a
full audit (:meth:`Ledger.verify_checksums`) can catch a change that kept size and mtime.

Many batch steps (several processes, possibly several nodes) append at once: each append is
one ``write`` of one line under an exclusive ``fcntl.lockf`` lock, which Linux NFS honours
too. A torn last line (a process killed mid-write) is ignored when read. The file is created
``0600``: it holds no secrets (URLs are masked), but other users have no business with it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LEDGER_NAME", "Ledger", "OutputIdentity", "source_identity"]

LEDGER_NAME = ".hpc_workflows_ledger.jsonl"


def source_identity(url_redacted: str, checksum: str | None) -> str:
    """What an output was made from, as the ledger records it: masked URL and expected checksum.

    Parameters
    ----------
    url_redacted
        The source URL with credentials masked (never the secret: the ledger is a file).
    checksum
        The expected checksum from a manifest (``sha256:...``), or None.
    """
    return f"{url_redacted}|{checksum or ''}"


@dataclass(frozen=True)
class OutputIdentity:
    """One output a run wants, and what it must have been made from to count as complete."""

    path: Path
    settings: str  # settings digest (preprocess.settings_digest)
    source: str  # source_identity(...)


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Ledger:
    """The completion ledger of one output folder.

    Parameters
    ----------
    directory
        The output folder; the ledger is ``<directory>/.hpc_workflows_ledger.jsonl``.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / LEDGER_NAME
        self._entries: dict[str, dict[str, Any]] | None = None

    def entries(self, *, reload: bool = False) -> dict[str, dict[str, Any]]:
        """The newest entry per output file name (read once, then cached; ``reload`` re-reads)."""
        if self._entries is None or reload:
            entries: dict[str, dict[str, Any]] = {}
            try:
                with open(self.path, encoding="utf-8") as fh:
                    for line in fh:
                        try:
                            entry = json.loads(line)
                        except json.JSONDecodeError:
                            continue  # a torn line from a killed writer: that output is redone
                        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                            entries[entry["name"]] = entry
            except FileNotFoundError:
                pass
            self._entries = entries
        return self._entries

    def is_complete(self, wanted: OutputIdentity) -> bool:
        """The completion rule for one output (see the module docstring)."""
        entry = self.entries().get(wanted.path.name)
        if entry is None or entry.get("settings") != wanted.settings or entry.get("source") != wanted.source:
            return False
        try:
            st = os.stat(wanted.path)
        except OSError:
            return False
        return st.st_size == entry.get("size") and st.st_mtime_ns == entry.get("mtime_ns")

    def completed(self, wanted: Iterable[OutputIdentity]) -> set[Path]:
        """The outputs among ``wanted`` that are complete and verified, by the ledger rule.

        Parameters
        ----------
        wanted
            The outputs a run (or a range of partitions) needs.

        Returns
        -------
        set of Path
            The paths that need no work.
        """
        return {w.path for w in wanted if self.is_complete(w)}

    def known(self, path: Path) -> bool:
        """Whether the ledger has any entry for this output (complete or not)."""
        return path.name in self.entries()

    def record(self, wanted: OutputIdentity, *, input_sha256: str, sha256: str | None = None) -> dict[str, Any]:
        """Append the entry for an output just written and verified; returns it.

        ``sha256`` of the output is computed here when not given.
        """
        if wanted.path.parent.resolve() != self.directory.resolve():
            raise ValueError(f"{wanted.path} is not in the ledger's folder {self.directory}")
        st = os.stat(wanted.path)
        entry = {
            "name": wanted.path.name,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "settings": wanted.settings,
            "source": wanted.source,
            "input_sha256": input_sha256,
            "sha256": sha256 or _sha256(wanted.path),
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)  # one whole line per writer, also over NFS
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A writer was killed mid-line: end its torn line, or ours would be lost with it.
                line = b"\n" + line
            os.write(fd, line)
        finally:
            os.close(fd)  # releases the lock
        if self._entries is not None:
            self._entries[entry["name"]] = entry
        return entry

    def verify_checksums(self, wanted: Iterable[OutputIdentity]) -> set[Path]:
        """The complete outputs whose content still has the recorded sha256 (a full, slow audit)."""
        return {w.path for w in wanted if self.is_complete(w)
                and _sha256(w.path) == self.entries()[w.path.name].get("sha256")}
