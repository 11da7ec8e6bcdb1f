"""Validate a whole run config file for a job, before anything runs: ``hpc-workflows check-config``.

Three checks, all run, every problem reported (not just the first):

1. Dagster's own check of the file against the job's run config schema (unknown top-level
   keys, loggers, resources, ops that do not exist, types), its long ``Expected: {...}``
   schema dumps cut down to the allowed keys;
2. the workflow's config (``ops.fetch_and_regrid.config``, :mod:`hpc_workflows.config`);
3. the executor's config (``execution.config``, :mod:`hpc_workflows.hpc.settings`), which
   Dagster only checks when the run starts, after the run is created.

Errors about values written in the file also say where (line, column, the text as written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_workflows.config_file import RunConfigFile, load_run_config_file

__all__ = ["ConfigReport", "check_run_config_file"]

#: Dagster's executor-level keys that our executor settings do not model.
_DAGSTER_EXECUTOR_KEYS = ("retries",)
_EXEC_LINE = re.compile(r"^(execution\.config[\w.]*): ")


@dataclass
class ConfigReport:
    """What is wrong (errors) or suspicious (warnings) in a run config file."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _schema_type_at(root_type: Any, levels: list[str]) -> Any:
    t = root_type
    for name in levels:
        fields = getattr(t, "fields", None)
        if not fields or name not in fields:
            return None
        t = fields[name].config_type
    return t


def _dagster_errors(job_def: Any, run_config: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(dotted path, short message, is a type error) of each problem Dagster's check finds."""
    from dagster import DagsterInvalidConfigError, validate_run_config

    try:
        validate_run_config(job_def, run_config)
    except DagsterInvalidConfigError as exc:
        if not exc.errors:  # raised by our config mapping: its message is ours already
            return [("ops", str(exc), True)]
        found = []
        root_type = job_def.run_config_schema.config_type
        for err in exc.errors:
            levels = list(err.stack.levels)
            path = ".".join(levels) or "(top level)"
            message = re.sub(r'\s*Expected: ".*$', "", err.message, flags=re.S)
            message = re.sub(r" at (the root|path \S+?)(\.|$)", r"\2", message)
            names = getattr(err.error_data, "field_names", None) or [
                getattr(err.error_data, "field_name", None)]
            if "unexpected config entr" in message:
                t = _schema_type_at(root_type, levels)
                allowed = sorted(getattr(t, "fields", {}) or [])
                unknown = ", ".join(repr(n) for n in names if n)
                message = (f"unknown key {unknown}: check the spelling"
                           + (f"; allowed here: {', '.join(allowed)}" if allowed else ""))
            found.append((path, message, err.reason.name == "RUNTIME_TYPE_MISMATCH"))
        return found
    return []


def _executor_config(run_config: dict[str, Any]) -> dict[str, Any] | None:
    execution = run_config.get("execution")
    if not isinstance(execution, dict) or not isinstance(execution.get("config", {}), dict):
        return None  # not a mapping: Dagster's check reports it
    config = dict(execution.get("config") or {})
    for key in _DAGSTER_EXECUTOR_KEYS:
        config.pop(key, None)
    return config


def _with_location(line: str, source: RunConfigFile) -> str:
    match = _EXEC_LINE.match(line)
    where = source.where(match[1]) if match else ""
    return f"{line} ({where})" if where else line


def check_run_config_file(path: str | Path, job_name: str = "fetch_and_regrid") -> ConfigReport:
    """Check a run config YAML file for ``job_name`` without running anything.

    Parameters
    ----------
    path : str or Path
        The run config file.
    job_name : str
        A job of :data:`hpc_workflows.definitions.defs`.

    Returns
    -------
    ConfigReport
        Errors (the run would fail) and warnings (valid but probably not meant), one line each.
    """
    from hpc_workflows.config import ConfigValidationError, validate_workflow_config
    from hpc_workflows.config_file import ConfigFileError
    from hpc_workflows.hpc.settings import validate_executor_settings

    report = ConfigReport()
    try:
        source = load_run_config_file(path)
    except ConfigFileError as exc:
        report.errors.append(str(exc))
        return report
    run_config = source.data

    from hpc_workflows.definitions import defs

    found = _dagster_errors(defs.get_job_def(job_name), run_config)
    ours: list[str] = []
    if all(where == "ops" for where, _, _ in found):
        # The file fits the schema, so Dagster resolved it ({env: NAME} values included) and
        # ran the workflow's own validation in the job's config mapping: its message is ours.
        ours += [message for _, message, _ in found]
        found = []
    else:
        # Dagster stopped at the schema: validate the workflow section as written, so that
        # its problems are reported now too, not one round of fixes later.
        ops = run_config.get("ops")
        section = ops.get(job_name) if isinstance(ops, dict) else None
        workflow = section.get("config") if isinstance(section, dict) else None
        if isinstance(workflow, dict):  # missing or not a mapping: Dagster says so
            try:
                validate_workflow_config(workflow)
            except ConfigValidationError as exc:
                ours.append(str(exc))
    executor = _executor_config(run_config)
    if executor is not None:
        try:
            settings = validate_executor_settings(executor)
        except ValueError as exc:
            head, *lines = str(exc).splitlines()
            ours.append("\n  ".join([head, *(_with_location(x.strip(), source) for x in lines)]))
        else:
            report.warnings += [_with_location(w, source) for w in settings.warnings()]

    said = "\n".join(ours)
    for where, message, type_error in found:
        # A type error of a field our validators name already (with the fix) would only repeat
        # it less helpfully; unknown keys are Dagster's to find (the workflow config allows
        # extra keys through to Dagster's schema).
        field_name = where.removeprefix(f"ops.{job_name}.config.")
        if type_error and said and field_name in said:
            continue
        report.errors.append(f"{where}: {message}")
    report.errors[:0] = ours
    return report
