"""Per-file results of a run on disk, so that summarising 10,000+ files holds none in memory.

Each batch step writes its files' results, sorted by key, as one JSON line each to
``<storage>/<run id>/hpc_workflows_results/<batch>.jsonl`` (atomically: a retried step
replaces its file) and passes on only the file's path. ``<storage>`` is the Dagster instance's
storage folder, where its IO manager keeps step outputs: every process of a run already reaches
it, and it is not the output filesystem, whose quota a run may use up. The run's summary then
merges those sorted files as streams (:func:`merged`), so the coordinator's memory does not
grow with the number of files, and removes them once the summary is written.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

#: The folder, in a run's folder of the instance's storage, of its per-file results.
RESULTS_DIR = "hpc_workflows_results"


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so it is valid (strict) JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def run_results_dir(storage: Path, run_id: str) -> Path:
    """Where the batch steps of run ``run_id`` leave their files' results (``storage``: the
    Dagster instance's storage folder)."""
    return storage / run_id / RESULTS_DIR


def write_results(path: Path, results: Iterable[dict[str, Any]]) -> int:
    """Write ``results`` to ``path`` as JSON lines sorted by key (strict JSON), atomically.

    Returns
    -------
    int
        How many were written.
    """
    rows = sorted((strict_json(r) for r in results), key=lambda r: r["key"])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = path.with_name(path.name + ".part")
    with open(part, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str, allow_nan=False) + "\n")
    os.replace(part, path)
    return len(rows)


def read_results(path: Path) -> Iterator[dict[str, Any]]:
    """The results in ``path``, one at a time, in its (key) order."""
    with open(path) as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def merged(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every result of ``paths`` (each sorted by key), in key order, holding one per file open."""
    return heapq.merge(*(read_results(p) for p in paths), key=lambda r: r["key"])


def remove_results(paths: Iterable[Path]) -> None:
    """Remove the results folders holding ``paths`` (a run's own, and a parent run's whose
    results a partial re-execution reused)."""
    for folder in {Path(p).parent for p in paths}:
        if folder.name == RESULTS_DIR:  # never anything else
            shutil.rmtree(folder, ignore_errors=True)
