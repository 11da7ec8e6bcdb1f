"""Dataset files: one YAML per dataset, validated like a run config, loaded one by one.

A dataset is what a run config describes (source, regrid, output, batching) plus its time
partitioning instead of a window::

    # configs/datasets/radar_3h.yaml
    partitioning: {period: daily, start: "2020-01-01", end: "2020-12-31"}   # end optional
    source: {template: "/archive/radar/{dt:%Y%m%d}.tar", ...}
    regrid: {...}
    output: {directory: /data/radar_0p5deg, name: radar}

The dataset's name is the file's stem unless ``name:`` says otherwise. Each partition is one
source file: the period is the file step. A bad file is reported with the same field-naming
errors as a run config and does not stop the other datasets from loading.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpc_workflows.config import (
    ConfigValidationError,
    check_step,
    WorkflowConfig,
    format_validation_error,
    parse_datetime,
    validate_workflow_config,
)

__all__ = ["PERIODS", "Arrival", "DatasetError", "DatasetSpec", "Partitioning", "load_dataset", "load_datasets"]

#: period -> (file step as the run config writes it, partition key format, source key format)
PERIODS: dict[str, tuple[str, str, str]] = {
    "hourly": ("1h", "%Y-%m-%d-%H:%M", "%Y%m%dT%H"),
    "3-hourly": ("3h", "%Y-%m-%d-%H:%M", "%Y%m%dT%H"),
    "daily": ("24h", "%Y-%m-%d", "%Y%m%d"),
    "monthly": ("1 month", "%Y-%m-%d", "%Y%m"),
}

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message names the file, the field and the fix."""


class Partitioning(BaseModel):
    """How a dataset is cut in time: one partition (and one source file) per period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: Literal["hourly", "3-hourly", "daily", "monthly"] = Field(
        description="Partition (and source file) period.")
    start: str = Field(description="First partition's start, ISO 8601, e.g. '2020-01-01'.")
    end: Optional[str] = Field(default=None, description="Last partition's start (inclusive); "
                               "default: open-ended, up to the last period that has ended.")

    @field_validator("start", "end")
    @classmethod
    def _is_date(cls, v: Optional[str], info: Any) -> Optional[str]:
        if v is not None:
            parse_datetime(v, f"partitioning.{info.field_name}")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> "Partitioning":
        if self.end is not None and self.end_datetime < self.start_datetime:
            raise ValueError(f"partitioning.end ({self.end}) is before partitioning.start ({self.start}): "
                             "set end on or after start, or leave it out for an open-ended dataset")
        if self.period == "monthly" and self.start_datetime.day != 1:
            raise ValueError(f"partitioning.start ({self.start}) must be the first of a month for "
                             "period: monthly")
        return self

    @property
    def start_datetime(self) -> _dt.datetime:
        return parse_datetime(self.start, "partitioning.start")

    @property
    def end_datetime(self) -> Optional[_dt.datetime]:
        return parse_datetime(self.end, "partitioning.end") if self.end else None

    @property
    def step(self) -> str:
        """The file step in the run config's words (``24h``, ``1 month``...)."""
        return PERIODS[self.period][0]


class Arrival(BaseModel):
    """Waiting for new source files, like a Cylc xtrigger: check, wait, give up after a while."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check_every: int = Field(default=300, ge=10, description="Seconds between checks for new files.")
    give_up_after: str = Field(default="2D", description="Stop waiting for a period's file this long "
                               "after the period ended (e.g. '6h', '2D').")
    lookback: int = Field(default=3, ge=1, le=1000, description="How many of the newest ended "
                          "periods to watch.")
    command: Optional[list[str]] = Field(default=None, description="For archive (command) sources: "
                                         "a listing command that exits 0 when {src} exists, e.g. "
                                         "['moo', 'test', '{src}']; without it such files are assumed "
                                         "present once their period ends.")

    @field_validator("give_up_after")
    @classmethod
    def _duration(cls, v: str) -> str:
        return check_step(v, "arrival.give_up_after")


@dataclass(frozen=True)
class DatasetSpec:
    """A validated dataset: its name, partitioning and the run config of its files.

    ``workflow`` is a run config whose window is the dataset's whole span (or its first
    period, when open-ended): :func:`hpc_workflows.datasets.partitions.workflow_for` narrows it
    to the partitions a run processes.
    """

    name: str
    path: Path
    partitioning: Partitioning
    raw: dict[str, Any]  # the workflow fields as written (source, regrid, output, batching)
    workflow: WorkflowConfig
    execution: dict[str, Any]
    arrival: Arrival = Arrival()

    @property
    def execution_config(self) -> dict[str, Any]:
        """The executor config (``execution: {config: ...}`` as in a run config) for its runs."""
        return dict(self.execution.get("config", self.execution) or {})


def load_dataset(path: str | Path) -> DatasetSpec:
    """Load and validate one dataset file.

    Raises
    ------
    DatasetError
        Naming the file and each bad field with its fix.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DatasetError(f"{path}:{where}: not valid YAML ({problem})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: a dataset file is a mapping with partitioning, source, regrid, output")
    doc = dict(doc)
    name = str(doc.pop("name", path.stem))
    if not _NAME.match(name):
        raise DatasetError(f"{path}: name {name!r} must start with a letter and hold only letters, digits "
                           "and _ (it becomes the Dagster asset key prefix): rename the file or set name:")
    execution = doc.pop("execution", None) or {}
    if execution:
        from hpc_workflows.hpc.settings import validate_executor_settings

        try:
            validate_executor_settings(dict(execution.get("config", execution) or {}))
        except ValueError as exc:
            raise DatasetError(f"Invalid dataset {path}:\n  {exc}") from None
    try:
        arrival = Arrival(**(doc.pop("arrival", None) or {}))
    except ValidationError as exc:
        raise DatasetError(f"Invalid dataset {path}:\n" + format_validation_error(exc, "arrival")) from None
    if "window" in doc:
        raise DatasetError(f"{path}: window: a dataset has partitioning: {{period, start, end}} instead "
                           "of a window (backfills choose the dates)")
    if "partitioning" not in doc:
        raise DatasetError(f"{path}: partitioning: missing: add e.g. partitioning: {{period: daily, "
                           "start: '2020-01-01'}}")
    try:
        partitioning = Partitioning(**(doc.pop("partitioning") or {}))
    except ValidationError as exc:
        raise DatasetError(f"Invalid dataset {path}:\n" + format_validation_error(exc, "partitioning")) from None
    except TypeError:
        raise DatasetError(f"{path}: partitioning: must be a mapping with period and start") from None
    end = partitioning.end or partitioning.start
    try:
        workflow = validate_workflow_config(
            {**doc, "window": {"start": partitioning.start, "end": end, "step": partitioning.step}})
    except ConfigValidationError as exc:
        text = str(exc).replace("Invalid fetch_and_regrid configuration:", f"Invalid dataset {path}:")
        raise DatasetError(text) from None
    if workflow.source.manifest is not None:
        raise DatasetError(f"{path}: source.manifest: a dataset's sources come from source.template, one "
                           "file per period; a manifest has no partitions to map (use the fetch_and_regrid "
                           "job for it)")
    return DatasetSpec(name=name, path=path, partitioning=partitioning, raw=doc, workflow=workflow,
                       execution=execution, arrival=arrival)


def load_datasets(folder: str | Path) -> tuple[list[DatasetSpec], dict[Path, str]]:
    """Load every ``*.yaml`` in ``folder``; a bad file is reported, not raised.

    Returns
    -------
    (list of DatasetSpec, dict of path -> error message)
        The good datasets (sorted by name) and what is wrong with each bad file.
    """
    folder = Path(folder)
    specs: list[DatasetSpec] = []
    errors: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        try:
            spec = load_dataset(path)
        except DatasetError as exc:
            errors[path] = str(exc)
            continue
        if spec.name in seen:
            errors[path] = (f"{path}: name {spec.name!r} is already used by {seen[spec.name]}: "
                            "give one of them another name:")
            continue
        seen[spec.name] = path
        specs.append(spec)
    return sorted(specs, key=lambda s: s.name), errors
