"""Typed, validated settings of the HPC executor (plain pydantic; no dagster here).

The executor's run config ``execution: config: {...}`` is validated into :class:`ExecutorSettings`.
Errors name the field and say what to write instead.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .walltime import (
    WorkerLifetime,
    lifetime_for,
    parse_walltime,
    walltime_number_problem,
    walltime_warning,
)

#: Dask worker resource every step needs one unit of: a worker process runs one step at a time,
#: and that step owns all of the worker's threads for its own dask computations.
STEP_SLOT = "dagster_step"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _size_with_unit(name: str, value: Any) -> Any:
    """Refuse a size without a unit: Dask reads a bare 8000 as 8000 bytes, and YAML gives the
    validator a number ("Input should be a valid string" would not say what to write)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        raise ValueError(f"{name} {value!r} has no unit: add a unit, e.g. '8GB' or '{value}MB'")
    return value


class AdaptSettings(_Strict):
    """Adaptive scaling: batch jobs submitted while steps wait, released when idle."""

    minimum: int = Field(0, ge=0, description="Workers kept even when idle.")
    maximum: int = Field(..., ge=1, description="Upper bound on workers.")

    @model_validator(mode="after")
    def _ordered(self) -> AdaptSettings:
        if self.minimum > self.maximum:
            raise ValueError(f"adapt.minimum ({self.minimum}) exceeds adapt.maximum ({self.maximum})")
        return self


class LocalClusterSettings(_Strict):
    """Worker processes on this machine (``distributed.LocalCluster``)."""

    threads_per_worker: int = Field(1, ge=1, description="Threads a step may use for dask work.")
    memory_limit: str | None = Field(None, description="Per worker, e.g. '2GiB'; None = auto.")
    local_directory: str | None = Field(None, description="Worker scratch space.")
    resources: dict[str, float] = Field(default_factory=dict, description="Dask resources per worker.")
    tls: bool = Field(
        True,
        description="TLS with temporary credentials: loopback is open to every user of the node, "
        "so off lets them run code as you on the workers.",
    )

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory_limit_unit(cls, value: Any) -> Any:
        if value in (0, "0"):  # distributed's "no limit"
            return "0"
        return _size_with_unit("memory_limit", value)


class BatchClusterSettings(_Strict):
    """Dask workers as batch jobs (dask-jobqueue); fields common to SLURM and PBS."""

    cores: int = Field(1, ge=1, description="Cores per batch job.")
    processes: int = Field(1, ge=1, description="Worker processes per job = steps run at once per job.")
    memory: str = Field("2GiB", description="Memory per job, e.g. '4GiB'.")
    memory_on_oom_retry: str | None = Field(
        None, description="Memory for worker jobs started after one was killed for memory (failure "
        "class out_of_memory), e.g. '8GiB'; None: the step is not retried with more memory."
    )
    walltime: str = Field("01:00:00", description="Job walltime; workers retire before it.")
    queue: str | None = Field(None, description="Partition (SLURM) or queue (PBS).")
    account: str | None = Field(None, description="Project/account to charge.")
    interface: str | None = Field(
        None, description="Network interface for scheduler and workers (e.g. 'ib0'; 'lo' on one node)."
    )
    scheduler_interface: str | None = Field(
        None, description="The scheduler's interface when the login node's differs from the compute "
        "nodes' (e.g. 'eth0' on the login node, 'ib0' on compute nodes); default: interface."
    )
    local_directory: str | None = Field(None, description="Node-local scratch for workers, e.g. '$TMPDIR'.")
    log_directory: str | None = Field(None, description="Where worker job logs go (shared FS).")
    job_script_prologue: list[str] = Field(
        default_factory=list, description="Shell lines before the worker starts (module load, conda activate)."
    )
    job_extra_directives: list[str] = Field(
        default_factory=list, description="Extra #SBATCH/#PBS directives, e.g. ['--qos=normal']."
    )
    resources: dict[str, float] = Field(default_factory=dict, description="Dask resources per worker.")
    python: str | None = Field(None, description="Python on the compute nodes (default: this one).")
    shared_temp_directory: str | None = Field(
        None, description="Shared folder for the temporary TLS files (default: log_directory or cwd)."
    )
    lifetime_margin: str | None = Field(
        None, description="Retire workers this long before walltime (default 10 %, 60 s..10 min)."
    )
    tls: bool = Field(True, description="TLS with temporary credentials between scheduler and workers.")
    death_timeout: int = Field(60, ge=1, description="Seconds a worker waits for a lost scheduler.")

    @field_validator("walltime", "lifetime_margin", mode="before")
    @classmethod
    def _walltime_is_text(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(walltime_number_problem(info.field_name or "walltime", value))
        return value

    @field_validator("walltime")
    @classmethod
    def _walltime_parses(cls, value: str) -> str:
        parse_walltime(value)
        return value

    @field_validator("memory", "memory_on_oom_retry", mode="before")
    @classmethod
    def _memory_unit(cls, value: Any, info: ValidationInfo) -> Any:
        return value if value is None else _size_with_unit(info.field_name or "memory", value)

    @field_validator("memory", "memory_on_oom_retry")
    @classmethod
    def _memory_parses(cls, value: str | None, info: ValidationInfo) -> str | None:
        from dask.utils import parse_bytes

        if value is None:
            return value
        try:
            parse_bytes(value)
        except ValueError as exc:
            raise ValueError(f"{info.field_name} {value!r} is not a size: write e.g. '4GiB' or '500MB'") from exc
        return value

    @model_validator(mode="after")
    def _oom_retry_is_more(self) -> BatchClusterSettings:
        from dask.utils import parse_bytes

        if self.memory_on_oom_retry and parse_bytes(self.memory_on_oom_retry) <= parse_bytes(self.memory):
            raise ValueError(
                f"memory_on_oom_retry {self.memory_on_oom_retry!r} is not more than memory "
                f"{self.memory!r}: give the larger memory a retry should ask for, or leave it out"
            )
        return self

    @model_validator(mode="after")
    def _cores_split(self) -> BatchClusterSettings:
        if self.cores % self.processes:
            raise ValueError(
                f"cores ({self.cores}) must be a multiple of processes ({self.processes}): "
                "each worker process gets cores/processes threads"
            )
        self.lifetime()  # margin shorter than walltime
        return self

    def lifetime(self) -> WorkerLifetime:
        """Worker lifetime (graceful retirement) derived from the walltime."""
        margin = parse_walltime(self.lifetime_margin) if self.lifetime_margin else None
        return lifetime_for(parse_walltime(self.walltime), margin)


class ExistingClusterSettings(_Strict):
    """A scheduler someone else runs (workers are theirs: no scaling, no closing)."""

    address: str = Field(..., description="Scheduler address, e.g. 'tls://10.0.0.5:8786'.")
    tls_ca_file: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None


class ClusterChoice(_Strict):
    """Exactly one cluster kind."""

    local: LocalClusterSettings | None = None
    slurm: BatchClusterSettings | None = None
    pbs: BatchClusterSettings | None = None
    existing: ExistingClusterSettings | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ClusterChoice:
        chosen = [k for k in ("local", "slurm", "pbs", "existing") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "cluster must name exactly one kind: local, slurm, pbs or existing "
                f"(got {chosen or 'none'}), e.g. cluster: {{slurm: {{queue: normal, cores: 4}}}}"
            )
        return self

    @property
    def kind(self) -> Literal["local", "slurm", "pbs", "existing"]:
        for k in ("local", "slurm", "pbs", "existing"):
            if getattr(self, k) is not None:
                return k  # type: ignore[return-value]
        raise AssertionError("validated to have one kind")

    @property
    def settings(self) -> LocalClusterSettings | BatchClusterSettings | ExistingClusterSettings:
        return getattr(self, self.kind)


class ExecutorSettings(_Strict):
    """Everything the executor needs: which cluster, how many workers, deadlines."""

    cluster: ClusterChoice = Field(default_factory=lambda: ClusterChoice(local=LocalClusterSettings()))
    scale: int | None = Field(None, ge=1, description="Fixed number of workers (kept: lost ones replaced).")
    adapt: AdaptSettings | None = None
    worker_start_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for a first worker before failing the run."
    )
    worker_pools: dict[str, ExecutorSettings] = Field(
        default_factory=dict,
        description="More worker pools, each its own cluster and scaling, by name; steps of ops "
        "tagged hpc_workflows/worker_pool: <name> run there, others on `cluster` (see .pools).",
    )

    @field_validator("worker_pools")
    @classmethod
    def _pools_flat(cls, pools: dict[str, ExecutorSettings]) -> dict[str, ExecutorSettings]:
        for name, pool in pools.items():
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"worker pool name {name!r}: use letters, digits, '_' or '-'")
            if pool.worker_pools:
                raise ValueError(f"worker_pools.{name}.worker_pools: a pool cannot have pools of its own")
            if "cluster" not in pool.model_fields_set:
                raise ValueError(
                    f"worker_pools.{name} needs a cluster, e.g. {name}: {{cluster: {{slurm: "
                    "{queue: datamover}}, scale: 1}")
        return pools

    @model_validator(mode="after")
    def _scaling(self) -> ExecutorSettings:
        if self.scale is not None and self.adapt is not None:
            raise ValueError("give either scale (fixed workers) or adapt (minimum/maximum), not both")
        kind = self.cluster.kind
        if kind == "existing" and (self.scale or self.adapt):
            raise ValueError("scale/adapt do not apply to an existing cluster: its owner scales it")
        if kind in ("slurm", "pbs") and self.scale is None and self.adapt is None:
            # dagster-dask hangs forever here (no job is ever submitted); say so instead.
            raise ValueError(
                f"cluster.{kind} needs scale (e.g. scale: 2) or adapt (e.g. adapt: {{minimum: 0, "
                "maximum: 4}}): without one no worker job is ever submitted"
            )
        return self

    def warnings(self) -> list[str]:
        """Valid settings that are probably not what was meant, as ``execution.config...`` lines."""
        pooled = [w.replace("execution.config.", f"execution.config.worker_pools.{name}.", 1)
                  for name, pool in self.worker_pools.items() for w in pool.warnings()]
        s = self.cluster.settings
        if not isinstance(s, BatchClusterSettings):
            return pooled
        where = f"execution.config.cluster.{self.cluster.kind}"
        found = [walltime_warning(f"{where}.{name}", text)
                 for name, text in (("walltime", s.walltime), ("lifetime_margin", s.lifetime_margin))
                 if text is not None]
        return [w for w in found if w] + pooled

    def workers_wanted(self) -> tuple[int, int]:
        """(minimum, maximum) workers; local defaults to one worker per core."""
        if self.adapt is not None:
            return self.adapt.minimum, self.adapt.maximum
        if self.scale is not None:
            return self.scale, self.scale
        n = os.cpu_count() or 1
        return n, n


def validate_executor_settings(config: dict[str, Any] | None) -> ExecutorSettings:
    """Validate raw executor config into :class:`ExecutorSettings`.

    Raises
    ------
    ValueError
        Listing every bad field as ``execution.config.<path>: <reason>``.
    """
    try:
        return ExecutorSettings.model_validate(config or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"])
            where = f"execution.config.{path}" if path else "execution.config"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; see docs/production.md for the fields)"
            lines.append(f"{where}: {msg}")
        raise ValueError("invalid HPC executor config:\n  " + "\n  ".join(lines)) from None
