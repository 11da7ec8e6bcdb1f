"""``hpc-workflows datasets``: check dataset files, show which dates exist, sync Dagster with the disk.

::

    hpc-workflows datasets check               # validate every file in configs/datasets
    hpc-workflows datasets status NAME         # complete / missing partitions, as ranges
    hpc-workflows datasets sync [NAME]         # make Dagster's partition status match the disk

Backfills use Dagster's own commands (one run per backfill: the assets' backfill policy)::

    dg launch --assets NAME/regridded --partition-range 2021-03-01...2021-03-31

The folder is ``--folder``, else ``$HPCW_DATASETS``, else ``configs/datasets``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _ranges(keys: list[str]) -> str:
    """'a...b, c' for runs of consecutive keys (in the order given)."""
    if not keys:
        return "none"
    return ", ".join(keys) if len(keys) <= 3 else f"{keys[0]}...{keys[-1]} ({len(keys)})"


def _runs(keys: list[str], flags: dict[str, bool], want: bool) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] = []
    for key in keys:
        if flags[key] == want:
            current.append(key)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hpc-workflows datasets``."""
    from hpc_workflows.datasets import complete_partitions, load_datasets, partition_keys_between

    parser = argparse.ArgumentParser(prog="hpc-workflows datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["check", "status", "sync"])
    parser.add_argument("name", nargs="?", help="dataset name (status: required; sync: default all)")
    parser.add_argument("--folder", type=Path,
                        default=Path(os.environ.get("HPCW_DATASETS", "configs/datasets")))
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"no dataset folder {args.folder}: create it, or set HPCW_DATASETS / --folder", file=sys.stderr)
        return 2
    specs, errors = load_datasets(args.folder)
    for error in errors.values():
        print(error, file=sys.stderr)
    if args.action == "check":
        for spec in specs:
            print(f"{spec.path}: OK ({spec.name}, {spec.partitioning.period} from {spec.partitioning.start})")
        return 1 if errors else 0
    chosen = [s for s in specs if args.name in (None, s.name)]
    if args.name and not chosen:
        print(f"no dataset named {args.name!r} in {args.folder} (have: {', '.join(s.name for s in specs)})",
              file=sys.stderr)
        return 2
    if args.action == "status":
        if not args.name:
            print("status needs a dataset name", file=sys.stderr)
            return 2
        spec = chosen[0]
        now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
        end = min(spec.partitioning.end_datetime or now, now)
        keys = partition_keys_between(spec, spec.partitioning.start_datetime, end)
        flags = complete_partitions(spec, keys)
        done = sum(flags.values())
        print(f"{spec.name}: {done} of {len(keys)} {spec.partitioning.period} partitions complete on disk")
        for run in _runs(keys, flags, False)[:50]:
            print(f"  missing {_ranges(run)}")
        return 0
    from dagster import DagsterInstance

    from hpc_workflows.assets import reconcile

    with DagsterInstance.get() as instance:
        for spec in chosen:
            done = reconcile(instance, spec)
            print(f"{spec.name}: {done.complete}/{done.checked} complete on disk; recorded "
                  f"{_ranges(done.recorded)}; now missing {_ranges(done.wiped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
