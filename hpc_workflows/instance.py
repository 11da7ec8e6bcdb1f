"""A persistent, project-local Dagster instance for dev runs.

Without ``DAGSTER_HOME`` Dagster uses a temporary instance that is deleted on exit, so run
history and step outputs vanish and Dask workers cannot read step inputs. ``ensure_dagster_home``
creates the folder and a ``dagster.yaml`` with telemetry off (telemetry would otherwise write
to ``~/.dagster`` on every run, which shared HPC home directories do not want) and runs
launched from the UI starting immediately (no ``dagster-daemon`` needed on a batch node).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DAGSTER_YAML", "ensure_dagster_home"]

DAGSTER_YAML = """\
# Written by hpc_workflows (hpc_workflows/instance.py). Edit freely: it is not overwritten.
# Run and event storage default to SQLite under this folder. On a shared network filesystem
# (NFS, GPFS, Lustre) SQLite can report "database is locked": see docs/production.md for
# the Postgres option.
telemetry:
  enabled: false
# Runs launched from the web UI start at once, without a dagster-daemon process: on a batch
# node there is nobody to keep a daemon alive, and the queue would wait forever.
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
# Warnings of the library's own loggers (fetch retries, skipped archive members...) go to the
# run's event log, so they show in the UI and not only in a worker's stderr.
# python_log_level INFO: the console (a job's log, the terminal) shows progress, warnings and
# errors, not Dagster's DEBUG line per event; every event is still stored in the run history.
# Per run, `loggers: {console: {config: {log_level: DEBUG}}}` brings the DEBUG lines back.
python_logs:
  python_log_level: INFO
  managed_python_loggers:
    - hpc_workflows
"""


def ensure_dagster_home(path: str | os.PathLike[str] | None = None) -> Path:
    """Create ``DAGSTER_HOME`` (default ``./.dagster_home``) with a ``dagster.yaml``.

    Parameters
    ----------
    path
        Folder to use; default ``$DAGSTER_HOME`` if set, else ``.dagster_home`` in the
        current directory.

    Returns
    -------
    pathlib.Path
        The absolute folder, which is also exported as ``DAGSTER_HOME`` in this process.
    """
    home = Path(path or os.environ.get("DAGSTER_HOME") or ".dagster_home").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        part = cfg.with_name("dagster.yaml.part")
        part.write_text(DAGSTER_YAML)
        part.replace(cfg)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


if __name__ == "__main__":
    print(ensure_dagster_home())
