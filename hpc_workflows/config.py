"""Typed run configuration for the workflows, validated before any work starts.

One :class:`WorkflowConfig` describes a whole ``fetch_and_regrid`` run: the date window, where
the files come from, how to regrid them and where to write. It is a Dagster ``Config`` (a
pydantic model), so the Dagster launchpad shows and type-checks it, and the job's config
mapping runs :func:`validate_workflow_config` when the run is created, before any step starts:
a bad date, a missing manifest or an unknown grid never costs a queued batch job.

Every error names the field as a dotted path (``window.end``) and says how to fix it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import re
from pathlib import Path
from typing import Any, Optional

from dagster import Config
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

__all__ = [
    "BatchingConfig",
    "ConfigValidationError",
    "OutputConfig",
    "RegridConfig",
    "SourceConfig",
    "TargetGridConfig",
    "TimeAggregationConfig",
    "WindowConfig",
    "WorkflowConfig",
    "format_validation_error",
    "parse_datetime",
    "validate_workflow_config",
]

REGRID_METHODS = ("conservative", "bilinear", "nearest", "aggregate")
AGGREGATE_STATISTICS = ("mean", "min", "max", "sum", "count", "fraction")


class ConfigValidationError(ValueError):
    """Raised when run configuration is invalid; the message lists every problem."""


def check_step(value: str, field: str) -> str:
    """``value`` if it reads as a step or duration (``24h``, ``1D``, ``1 month``).

    Raises
    ------
    ValueError
        Naming ``field`` and what is wrong.
    """
    from hpc_workflows.fetch import parse_step

    try:
        parse_step(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    return value


def parse_datetime(value: str, field: str) -> _dt.datetime:
    """Parse an ISO-8601 date or date-time such as ``2020-02-14`` or ``2020-02-14T18:00``.

    Parameters
    ----------
    value
        The text from the config.
    field
        Dotted field name used in the error message.

    Returns
    -------
    datetime.datetime
        A naive datetime (UTC is assumed throughout, as in the archives we read).
    """
    text = str(value).strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1]
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{field}={value!r} is not a date: use ISO 8601, e.g. '2020-02-14' or '2020-02-14T18:00'"
        ) from None
    return parsed.replace(tzinfo=None) if parsed.tzinfo is None else parsed.astimezone(
        _dt.timezone.utc
    ).replace(tzinfo=None)


class WindowConfig(Config):
    """The date window to process: ``start`` to ``end`` inclusive, one source per ``step``."""

    start: str = Field(description="First date/time, ISO 8601, e.g. '2020-02-14T18:00'.")
    end: str = Field(description="Last date/time (inclusive), ISO 8601.")
    step: str = Field(
        default="24h",
        description="Spacing of sources: e.g. '24h', '1D', '3h', '1 month'.",
    )

    @field_validator("start")
    @classmethod
    def _start_is_date(cls, v: str) -> str:
        parse_datetime(v, "window.start")
        return v

    @field_validator("end")
    @classmethod
    def _end_is_date(cls, v: str) -> str:
        parse_datetime(v, "window.end")
        return v

    @field_validator("step")
    @classmethod
    def _step_is_known(cls, v: str) -> str:
        return check_step(v, "window.step")

    @model_validator(mode="after")
    def _end_after_start(self) -> "WindowConfig":
        if self.end_datetime < self.start_datetime:
            raise ValueError(
                f"window.end ({self.end}) is before window.start ({self.start}): "
                "set end on or after start"
            )
        return self

    @property
    def start_datetime(self) -> _dt.datetime:
        return parse_datetime(self.start, "window.start")

    @property
    def end_datetime(self) -> _dt.datetime:
        return parse_datetime(self.end, "window.end")


class SourceConfig(Config):
    """Where the input files come from: a path/URL ``template`` or a ``manifest``."""

    template: Optional[str] = Field(
        default=None,
        description="Path or URL with a date field, e.g. 'https://host/radar/{dt:%Y%m%d}.tar'.",
    )
    manifest: Optional[str] = Field(
        default=None,
        description="CSV/JSON/YAML list of url (+ optional key, time, checksum, size).",
    )
    transport: str = Field(
        default="auto",
        description="'auto' (by URL scheme: http(s)://, file://, path) or 'command'.",
    )
    command: Optional[list[str]] = Field(
        default=None,
        description="Archive client as an argument list with {src} and {dest}, "
        "e.g. ['moo', 'get', '-f', '{src}', '{dest}'].",
    )
    members: Optional[list[str]] = Field(
        default=None,
        description="Glob patterns selecting files inside tar/zip archives, e.g. ['*rainrate*'].",
    )
    products: Optional[list[str]] = Field(
        default=None,
        description="Product names; the selected members of each are merged into one file "
        "per product and source, e.g. ['rainrate_composite', 'qualityproduct_composite'].",
    )
    format: str = Field(
        default="auto",
        description="Format of the fetched files or archive members: 'auto' (recognised by "
        "content) or 'netcdf', 'nimrod', 'pp' (UM PP/fieldsfile) or 'grib' to force one.",
    )
    permanent_exit_codes: Optional[list[int]] = Field(
        default=None,
        description="Archive-client exit statuses that retrying cannot fix (e.g. [2] for moo's "
        "user errors such as a wrong path): fail at once instead of retrying.",
    )
    command_timeout: Optional[float] = Field(
        default=None, description="Seconds before a hung archive command is killed."
    )
    checksum_sidecar: Optional[str] = Field(
        default=None, description="Fetch '<url>.sha256' or '<url>.md5' and verify: 'sha256' or 'md5'."
    )
    retries: int = Field(default=5, description="Attempts per file after the first.")
    backoff_seconds: float = Field(default=2.0, description="First retry delay; doubles each time.")
    connect_timeout: float = Field(default=30.0, description="Seconds to establish a connection.")
    read_timeout: float = Field(default=120.0, description="Seconds without data before retrying.")
    max_connections_per_host: int = Field(default=4, description="Concurrent downloads per host.")
    batch_command: Optional[list[str]] = Field(
        default=None,
        description="Batch form of the archive client for recalls of many files in one request: "
        "'{src}' alone becomes one argument per file, e.g. ['moo', 'get', '-f', '{src}', '{dest_dir}'].",
    )
    max_archive_commands: int = Field(
        default=2,
        description="Archive-client commands running at once on a node, across steps and runs.",
    )
    slot_dir: Optional[str] = Field(
        default=None,
        description="Folder of the lock files behind max_connections_per_host and "
        "max_archive_commands (default: node-local, per user); a folder on a shared filesystem "
        "with working flock extends both caps across nodes.",
    )
    unpack_max_ratio: float = Field(
        default=200.0,
        description="Unpacking one archive may write at most this many bytes per archive byte "
        "(archive-bomb guard, checked while streaming).",
    )
    unpack_max_bytes: int = Field(
        default=50 * 10**9,
        description="Unpacking one archive may write at most this many bytes in total.",
    )

    @field_validator("transport")
    @classmethod
    def _transport_known(cls, v: str) -> str:
        if v not in ("auto", "command"):
            raise ValueError(f"source.transport={v!r} is unknown: use 'auto' or 'command'")
        return v

    @field_validator("checksum_sidecar")
    @classmethod
    def _sidecar_known(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in ("sha256", "md5"):
            raise ValueError(f"source.checksum_sidecar={v!r} is unknown: use 'sha256' or 'md5'")
        return v

    @field_validator("format")
    @classmethod
    def _format_known(cls, v: str) -> str:
        from hpc_workflows.formats import FORMATS

        if v != "auto" and v not in FORMATS:
            raise ValueError(f"source.format={v!r} is unknown: use 'auto' or one of {', '.join(FORMATS)}")
        return v

    @field_validator("manifest")
    @classmethod
    def _manifest_exists(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not Path(_expand(v)).is_file():
            raise ValueError(
                f"source.manifest={v!r} does not exist (looked for {Path(_expand(v)).resolve()}): "
                "give the path of an existing CSV/JSON/YAML manifest"
            )
        return v

    @field_validator("retries", "max_connections_per_host")
    @classmethod
    def _non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be zero or more")
        return v

    @field_validator("unpack_max_ratio")
    @classmethod
    def _ratio_at_least_one(cls, v: float) -> float:
        if v < 1:
            raise ValueError(f"source.unpack_max_ratio={v} must be 1 or more (bytes written per archive byte)")
        return v

    @field_validator("unpack_max_bytes")
    @classmethod
    def _positive_bytes(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"source.unpack_max_bytes={v} must be a positive number of bytes")
        return v

    @model_validator(mode="after")
    def _one_kind_of_source(self) -> "SourceConfig":
        if (self.template is None) == (self.manifest is None):
            raise ValueError(
                "source: give exactly one of source.template (a path/URL with a {dt:...} field) "
                "or source.manifest (a file listing the sources)"
            )
        if self.transport == "command":
            if not self.command:
                raise ValueError(
                    "source.command is required when source.transport is 'command', e.g. "
                    "['moo', 'get', '-f', '{src}', '{dest}']"
                )
            from hpc_workflows.fetch.argv import shell_warning
            from hpc_workflows.fetch.preflight import logger as fetch_logger
            from hpc_workflows.fetch.settings import validate_command_template

            try:
                validate_command_template(list(self.command))
            except ValueError as exc:
                raise ValueError(f"source.command: {exc}") from None
            warning = shell_warning(list(self.command))
            if warning:
                fetch_logger.warning(warning)
        if self.batch_command is not None:
            from hpc_workflows.fetch.settings import validate_batch_command

            try:
                validate_batch_command(list(self.batch_command))
            except ValueError as exc:
                raise ValueError(f"source.batch_command: {exc}") from None
        if self.max_archive_commands < 1:
            raise ValueError(f"source.max_archive_commands={self.max_archive_commands} must be 1 or more")
        return self


class TargetGridConfig(Config):
    """Target grid: a named shorthand or a kind with its parameters."""

    name: Optional[str] = Field(
        default=None, description="Shorthand such as 'global_1deg' or 'global_0.25deg'."
    )
    kind: Optional[str] = Field(
        default=None, description="'global', 'regional', 'explicit' or 'file'."
    )
    resolution: Optional[float] = Field(default=None, description="Cell size in degrees.")
    lat: Optional[list[float]] = Field(
        default=None, description="[south, north] for 'regional'; all centres for 'explicit'."
    )
    lon: Optional[list[float]] = Field(
        default=None, description="[west, east] for 'regional'; all centres for 'explicit'."
    )
    path: Optional[str] = Field(default=None, description="Template netCDF for 'file'.")

    def spec(self) -> str | dict[str, Any]:
        """The spec accepted by :func:`hpc_workflows.regrid.parse_target_grid`."""
        if self.name is not None:
            return self.name
        return {k: v for k, v in self.model_dump().items() if v is not None and k != "name"}

    @model_validator(mode="after")
    def _grid_is_known(self) -> "TargetGridConfig":
        from hpc_workflows.regrid import parse_target_grid

        if self.name is None and self.kind is None:
            raise ValueError(
                "regrid.target: give a name (e.g. 'global_1deg') or a kind "
                "('global', 'regional', 'explicit', 'file')"
            )
        try:
            parse_target_grid(self.spec())
        except (ValueError, OSError) as exc:
            raise ValueError(f"regrid.target is not a grid we can build: {exc}") from None
        return self


class TimeAggregationConfig(Config):
    """Resample in time before regridding, e.g. 3-hourly sums of 5-minute rates.

    The rules (and their checks) are :class:`hpc_workflows.temporal.TimeAggregation`;
    docs/time.md states the conventions and the completeness rule.
    """

    freq: str = Field(description="Window length, pandas-style, e.g. '3h', '1D', '1MS'.")
    how: str = Field(default="mean", description="'mean', 'sum', 'min' or 'max'.")
    scale: float = Field(
        default=1.0, description="Factor applied after aggregating, e.g. 1/12 for 5-min rates."
    )
    units: Optional[str] = Field(
        default=None, description="New units after aggregating, e.g. 'mm' for summed mm/h rates."
    )
    input_step: Optional[str] = Field(
        default=None, description="The input's regular step, e.g. '5min'; default: read from its times."
    )
    input_interval: str = Field(
        default="instant",
        description="'instant' (values at their time), 'ending' (over the step ending at their "
        "time: a 24:00 value belongs to the day before) or 'starting'.",
    )
    label: str = Field(default="start", description="Label each window with its 'start' or 'end'.")
    offset: Optional[str] = Field(
        default=None, description="Windows shifted from midnight, e.g. '9h' for 09-09 UTC rain days."
    )
    min_sample_fraction: float = Field(
        default=1.0,
        description="Fraction of a window's expected steps a cell needs (present and valid); "
        "below it the cell is missing. 1 = every step.",
    )
    partial_sum: str = Field(
        default="scale_up",
        description="'sum' over an allowed incomplete window: 'scale_up' to the full window or 'as_is'.",
    )
    standard_name: Optional[str] = Field(
        default=None,
        description="CF standard_name of the result, e.g. 'thickness_of_rainfall_amount' for mm; "
        "new units without it drop the input's standard_name.",
    )

    @field_validator("freq", "how", "scale", "input_step", "input_interval", "label", "offset",
                     "min_sample_fraction", "partial_sum")
    @classmethod
    def _field_valid(cls, v: Any, info: ValidationInfo) -> Any:
        from hpc_workflows.temporal.rules import rule_problems

        found = rule_problems({info.field_name: v})
        if found:
            raise ValueError(found[0][1])
        return v

    @model_validator(mode="after")
    def _steps_fit_windows(self) -> "TimeAggregationConfig":
        from hpc_workflows.temporal.rules import rule_problems

        found = rule_problems({"freq": self.freq, "input_step": self.input_step})
        if found:
            raise ValueError(f"{found[0][0]}: {found[0][1]}")
        return self

    def rules(self) -> "TimeAggregation":
        """The plain rules for the library (see :class:`hpc_workflows.temporal.TimeAggregation`)."""
        from hpc_workflows.temporal.rules import TimeAggregation

        return TimeAggregation(**{k: getattr(self, k) for k in TimeAggregation.__dataclass_fields__})


class RegridConfig(Config):
    """How to map the data onto the target grid."""

    target: TargetGridConfig = Field(description="The target grid.")
    method: str = Field(
        default="conservative", description="conservative, bilinear, nearest or aggregate."
    )
    variables: Optional[list[str]] = Field(
        default=None, description="Data variables to regrid; default every gridded variable."
    )
    min_valid_fraction: float = Field(
        default=0.5,
        description="Target cells whose valid source weight is below this fraction are missing.",
    )
    statistics: Optional[list[str]] = Field(
        default=None, description="For 'aggregate': mean, min, max, sum, count, fraction."
    )
    bands: Optional[list[list[float]]] = Field(
        default=None, description="For 'fraction': value bands [[lo, hi], ...]; hi may be null."
    )
    weights_dir: Optional[str] = Field(
        default=None, description="Folder for reusable weights files (default: output/.weights)."
    )
    time_aggregation: Optional[TimeAggregationConfig] = Field(
        default=None, description="Optional resampling in time before regridding."
    )

    @field_validator("method")
    @classmethod
    def _method_known(cls, v: str) -> str:
        if v not in REGRID_METHODS:
            raise ValueError(f"regrid.method={v!r} is unknown: use one of {', '.join(REGRID_METHODS)}")
        return v

    @field_validator("min_valid_fraction")
    @classmethod
    def _fraction_range(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"regrid.min_valid_fraction={v} must be between 0 and 1")
        return v

    @model_validator(mode="after")
    def _statistics_fit_method(self) -> "RegridConfig":
        if self.statistics:
            if self.method != "aggregate":
                raise ValueError("regrid.statistics only applies when regrid.method is 'aggregate'")
            bad = [s for s in self.statistics if s not in AGGREGATE_STATISTICS]
            if bad:
                raise ValueError(
                    f"regrid.statistics has unknown {bad}: use {', '.join(AGGREGATE_STATISTICS)}"
                )
            if "fraction" in self.statistics and not self.bands:
                raise ValueError("regrid.bands is required for the 'fraction' statistic, e.g. [[0, 0.5], [0.5, 2]]")
        return self

    def band_tuples(self) -> Optional[list[tuple[float, float]]]:
        if not self.bands:
            return None
        out = []
        for band in self.bands:
            lo, hi = (band + [float("inf")])[:2] if len(band) == 1 else band[:2]
            out.append((float(lo), float(hi)))
        return out


class OutputConfig(Config):
    """Where and how outputs are written."""

    directory: str = Field(description="Folder for the regridded files (created if missing).")
    name: str = Field(default="output", description="Prefix of every output file name.")
    compression_level: int = Field(default=4, description="zlib level 0-9 for data variables.")
    workdir: Optional[str] = Field(
        default=None,
        description="Scratch folder for downloads and unpacking (default: <directory>/.work).",
    )
    check_area_means: bool = Field(
        default=False,
        description="Record the area-weighted mean of input (over the target's region) and "
        "output per variable: a conservation check that costs one more read of each input.",
    )

    @field_validator("compression_level")
    @classmethod
    def _level(cls, v: int) -> int:
        if not 0 <= v <= 9:
            raise ValueError(f"output.compression_level={v} must be 0 (off) to 9")
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError(f"output.name={v!r} may only hold letters, digits, '_', '-' and '.'")
        return v

    @field_validator("directory")
    @classmethod
    def _writable(cls, v: str) -> str:
        path = Path(_expand(v)).resolve()
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise ValueError(f"output.directory={v!r} is not writable ({probe}): choose a folder you can write to")
        return v

    @property
    def directory_path(self) -> Path:
        return Path(_expand(self.directory)).resolve()

    @property
    def workdir_path(self) -> Path:
        return Path(_expand(self.workdir)).resolve() if self.workdir else self.directory_path / ".work"


class BatchingConfig(Config):
    """How the files of a run are grouped into steps and pipelined (docs/production.md)."""

    files_per_step: Optional[int] = Field(
        default=None,
        description="Files per batch step (default: the files to do / 16, at most 500).",
    )
    files_in_flight: int = Field(
        default=4,
        description="Files one batch step holds on scratch at once (fetching, waiting or "
        "regridding); also its number of fetch threads.",
    )
    keep_scratch: bool = Field(
        default=False,
        description="Keep each file's download and merged files in output.workdir after its "
        "output is verified (default: remove them).",
    )

    @field_validator("files_per_step")
    @classmethod
    def _per_step_positive(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v < 1:
            raise ValueError(f"batching.files_per_step={v} must be 1 or more (or left out to choose it from the count)")
        return v

    @field_validator("files_in_flight")
    @classmethod
    def _in_flight_positive(cls, v: int) -> int:
        if not 1 <= v <= 64:
            raise ValueError(f"batching.files_in_flight={v} must be 1 to 64 (files on scratch per batch step)")
        return v


class WorkflowConfig(Config):
    """Everything one ``fetch_and_regrid`` run needs."""

    window: WindowConfig
    source: SourceConfig
    regrid: RegridConfig
    output: OutputConfig
    batching: Optional[BatchingConfig] = Field(
        default=None,
        description="Batch steps and scratch: files_per_step, files_in_flight, keep_scratch.",
    )
    subset_time: bool = Field(
        default=True, description="Also cut each file's data to the window (time coordinate)."
    )

    @model_validator(mode="after")
    def _sources_plannable(self) -> "WorkflowConfig":
        # Planning is cheap and catches malformed templates and unreadable manifests now,
        # before any batch job is queued. Every op of a run validates the same config again
        # (each batch step on its worker): the check is memoised per process, keyed by what it
        # reads, so a 10,000-file window is planned and checked once per process, not per step.
        manifest = _expand(self.source.manifest) if self.source.manifest is not None else None
        stamp = None
        if manifest is not None:
            try:
                st = os.stat(manifest)
                stamp = (st.st_size, st.st_mtime_ns)
            except OSError:
                stamp = None
        _check_sources(
            self.source.template, manifest, stamp, self.window.start, self.window.end, self.window.step,
            self.source.transport, tuple(self.source.command or ()) if self.source.command else None,
            tuple(self.source.batch_command or ()) if self.source.batch_command else None,
        )
        return self


@functools.lru_cache(maxsize=16)
def _check_sources(template: Optional[str], manifest: Optional[str], manifest_stamp: Any, start: str,
                   end: str, step: str, transport: str, command: Optional[tuple[str, ...]],
                   batch_command: Optional[tuple[str, ...]]) -> None:
    """Plan the sources and run the pre-flight checks; raise ValueError naming the field."""
    from hpc_workflows.fetch import plan_sources, read_manifest
    from hpc_workflows.fetch.preflight import check_planned_sources

    if template is not None:
        sources = plan_sources(parse_datetime(start, "window.start"), parse_datetime(end, "window.end"),
                               step, template)
    else:
        sources = read_manifest(manifest or "")
    # URL syntax, a transport for each scheme, no file name an archive client takes for
    # an option: all knowable now, before a step or batch job starts.
    origin = "source.template" if template is not None else "source.manifest"
    check_planned_sources(sources, transport, list(command) if command else None, origin,
                          list(batch_command) if batch_command else None)
    if not sources:
        raise ValueError(
            "source: the window and template/manifest give no files: check window.start, "
            "window.end and the manifest's times"
        )


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def format_validation_error(exc: ValidationError, root: str = "") -> str:
    """Turn a pydantic error into lines of ``field: problem`` a user can act on."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        where = ".".join(p for p in (root, loc) if p)
        lines.append(f"  - {where}: {msg}" if where and not msg.startswith(where.split(".")[-1]) else f"  - {msg}")
    return "\n".join(lines)


def validate_workflow_config(raw: dict[str, Any]) -> WorkflowConfig:
    """Validate a run configuration dict and return the typed config.

    Raises
    ------
    ConfigValidationError
        With one line per problem, each naming the field and the fix.
    """
    try:
        return WorkflowConfig(**raw)
    except ValidationError as exc:
        raise ConfigValidationError(
            "Invalid fetch_and_regrid configuration:\n" + format_validation_error(exc)
        ) from None
