"""Translate the typed run config into the plain settings objects of the library modules."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from hpc_workflows.batching import BatchJob
from hpc_workflows.config import BatchingConfig, WorkflowConfig
from hpc_workflows.fetch import FetchSettings, Source, parse_step, plan_sources, read_manifest
from hpc_workflows.fetch.unpack import UnpackLimits
from hpc_workflows.preprocess import PreprocessSettings

__all__ = ["batch_job", "fetch_settings", "planned_sources", "preprocess_settings", "unpack_limits"]


def planned_sources(cfg: WorkflowConfig) -> list[Source]:
    """The sources of a run: from the template over the window, or the manifest in the window."""
    window = cfg.window
    if cfg.source.template is not None:
        return plan_sources(window.start_datetime, window.end_datetime, window.step, cfg.source.template)
    sources = read_manifest(os.path.expandvars(os.path.expanduser(cfg.source.manifest or "")))
    # Manifest entries without a time are always wanted; dated ones must fall in the window.
    return [
        s for s in sources
        if s.time is None or window.start_datetime <= s.time <= window.end_datetime
    ]


def fetch_settings(cfg: WorkflowConfig) -> FetchSettings:
    """FetchSettings for this run's source section."""
    src = cfg.source
    return FetchSettings(
        transport=src.transport,
        command=list(src.command) if src.command else None,
        retries=src.retries,
        backoff_initial=src.backoff_seconds,
        connect_timeout=src.connect_timeout,
        read_timeout=src.read_timeout,
        max_connections_per_host=src.max_connections_per_host,
        checksum_sidecar=src.checksum_sidecar,
        command_permanent_exit_codes=list(src.permanent_exit_codes or []),
        command_timeout=src.command_timeout,
        batch_command=list(src.batch_command) if src.batch_command else None,
        max_archive_commands=src.max_archive_commands,
        host_lock_dir=str(Path(os.path.expanduser(src.slot_dir)).resolve()) if src.slot_dir else "auto",
    )


def unpack_limits(cfg: WorkflowConfig) -> UnpackLimits:
    """What unpacking one archive of this run may write (archive-bomb guard)."""
    return UnpackLimits(max_ratio=cfg.source.unpack_max_ratio, max_bytes=cfg.source.unpack_max_bytes)


def batch_job(cfg: WorkflowConfig) -> BatchJob:
    """The plain settings every batch of this run shares (see hpc_workflows.batching)."""
    from hpc_workflows.batching.neighbours import crosses_files

    batching = cfg.batching or BatchingConfig()
    preprocess = preprocess_settings(cfg)
    step = parse_step(cfg.window.step)
    return BatchJob(
        fetch=fetch_settings(cfg),
        preprocess=preprocess,
        output_dir=cfg.output.directory_path,
        output_name=cfg.output.name,
        workdir=cfg.output.workdir_path,
        products=tuple(cfg.source.products) if cfg.source.products else None,
        members=tuple(cfg.source.members) if cfg.source.members else None,
        unpack_limits=unpack_limits(cfg),
        files_in_flight=batching.files_in_flight,
        keep_scratch=batching.keep_scratch,
        source_format=cfg.source.format,
        # Windows that cross files (09Z rain days) read the next file's first steps.
        neighbour_step=step if crosses_files(preprocess.time_aggregation, step) else None,
    )


def _window_data_end(cfg: WorkflowConfig) -> datetime.datetime:
    step = parse_step(cfg.window.step)
    return cfg.window.end_datetime + step - datetime.timedelta(seconds=1)


def preprocess_settings(cfg: WorkflowConfig) -> PreprocessSettings:
    """PreprocessSettings for this run's regrid and output sections."""
    rg = cfg.regrid
    agg = rg.time_aggregation
    weights_dir = rg.weights_dir or str(cfg.output.directory_path / ".weights")
    return PreprocessSettings(
        target=rg.target.spec(),
        method=rg.method,
        variables=list(rg.variables) if rg.variables else None,
        min_valid_fraction=rg.min_valid_fraction,
        statistics=list(rg.statistics) if rg.statistics else None,
        bands=rg.band_tuples(),
        weights_dir=str(Path(os.path.expanduser(weights_dir)).resolve()),
        time_aggregation=agg.rules() if agg else None,
        window_start=cfg.window.start_datetime if cfg.subset_time else None,
        # The last source covers [end, end + step): keep its data, not just its first instant.
        window_end=_window_data_end(cfg) if cfg.subset_time else None,
        compression_level=cfg.output.compression_level,
        check_area_means=cfg.output.check_area_means,
    )
