"""``hpc-workflows``: small helpers around the Dagster CLI for people who do not want to learn it.

``hpc-workflows init-home [DIR]``  create a persistent DAGSTER_HOME with telemetry off
``hpc-workflows report DIR``       print what a run wrote and a sanity figure per output
``hpc-workflows check-config FILE`` validate a run config YAML without running anything
``hpc-workflows plan FILE``        what a run of FILE would do and cost; nothing is submitted
``hpc-workflows datasets ...``     check dataset files, show which dates exist, sync Dagster with the disk
``hpc-workflows postgres ...``     a private PostgreSQL server for the Dagster instance
``hpc-workflows ui``               the web UI for its owner only (Unix socket, secret token)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _report(directory: Path) -> int:
    summary_file = directory / "run_summary.json"
    if not summary_file.is_file():
        print(f"no run summary in {directory}: has the job run?", file=sys.stderr)
        return 1
    summary = json.loads(summary_file.read_text())
    print(f"run {summary['run_id']} finished {summary['finished']}")
    print(f"  sources: {summary['sources']} ({summary['fetched']} fetched, "
          f"{summary['fetch_skipped']} already complete)")
    print(f"  outputs: {summary['outputs_written']} written, {summary['outputs_skipped']} already complete")
    for result in summary["results"]:
        for out in result["outputs"]:
            print(f"  {out['output']}")
            for key, value in out.items():
                if key.startswith("area_mean_before["):
                    name = key[len("area_mean_before["):-1]
                    after = out.get(f"area_mean_after[{name}]")
                    print(f"    {name}: area-weighted mean over the target region {value:.4f} before, "
                          f"{after:.4f} after regridding (difference {after - value:+.1e})")
    return 0


def _check_config(path: Path) -> int:
    # Every problem of the whole file (ops, execution, unknown keys, YAML syntax), one line
    # each and no traceback: the job scripts run this before anything is submitted.
    from hpc_workflows.pipeline.check_config import check_run_config_file

    report = check_run_config_file(path)
    for warning in report.warnings:
        print(f"{path}: warning: {warning}", file=sys.stderr)
    if not report.ok:
        if not report.errors[0].startswith(str(path)):  # a file error names the file itself
            print(f"{path}: invalid run config:", file=sys.stderr)
        for error in report.errors:
            print("  " + error.replace("\n", "\n  "), file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpc-workflows`` command."""
    parser = argparse.ArgumentParser(prog="hpc-workflows", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    home = sub.add_parser("init-home", help="create a persistent DAGSTER_HOME")
    home.add_argument("directory", nargs="?", default=None)
    report = sub.add_parser("report", help="summarise a finished run's outputs")
    report.add_argument("directory", type=Path)
    check = sub.add_parser("check-config", help="validate a run config YAML")
    check.add_argument("file", type=Path)
    sub.add_parser("ui", add_help=False, help="the web UI for you only (hpc-workflows ui --help)")
    sub.add_parser("datasets", add_help=False,
                   help="check dataset files, show complete/missing dates, sync Dagster with the disk")
    sub.add_parser("plan", add_help=False,
                   help="files, bytes, outputs, job scripts and cost of a run; nothing submitted")
    sub.add_parser("postgres", add_help=False,
                   help="a private PostgreSQL for the Dagster instance (start|status|stop)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ui"]:  # it parses its own options
        from hpc_workflows.ui.serve import main as ui_main

        return ui_main(argv[1:])
    if argv[:1] == ["datasets"]:
        from hpc_workflows.datasets.cli import main as datasets_main

        return datasets_main(argv[1:])
    if argv[:1] == ["plan"]:
        from hpc_workflows.hpc.dry_run import main as plan_main

        return plan_main(argv[1:])
    if argv[:1] == ["postgres"]:
        from hpc_workflows.pgserver import main as postgres_main

        return postgres_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "init-home":
        from hpc_workflows.instance import ensure_dagster_home

        print(ensure_dagster_home(args.directory))
        return 0
    if args.command == "report":
        return _report(args.directory)
    return _check_config(args.file)


if __name__ == "__main__":
    sys.exit(main())
