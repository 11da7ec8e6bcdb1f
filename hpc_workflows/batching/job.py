"""What a batch needs to know to process its files: plain settings, no Dagster."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from hpc_workflows.batching.ledger import OutputIdentity, source_identity
from hpc_workflows.fetch import FetchSettings, Source
from hpc_workflows.fetch.errors import redact_url
from hpc_workflows.fetch.unpack import UnpackLimits
from hpc_workflows.preprocess import PreprocessSettings, settings_digest

__all__ = ["BatchJob", "default_files_per_step", "is_netcdf_name"]

_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")

#: A run is cut into about this many batch steps when files_per_step is not given: enough to
#: keep a few dozen workers busy, few enough that Dagster's ~0.15 s and ~10 events per step
#: are nothing against the files' own work.
TARGET_STEPS = 16
#: ...but no batch larger than this: a step's per-file metadata stays a few hundred kB, and a
#: worker lost mid-batch leaves at most this many files for the step's retry to look at.
MAX_FILES_PER_STEP = 500


def is_netcdf_name(name: str) -> bool:
    """Whether a fetched file is used as netCDF as it is (no unpack/merge), from its name.

    The one place that decides it, so a content-based check can replace the suffix check.
    """
    return name.endswith(_NETCDF_SUFFIXES)


def default_files_per_step(n_files: int) -> int:
    """Files per batch step when the config does not say: ``ceil(n / 16)``, capped at 500."""
    return max(1, min(MAX_FILES_PER_STEP, math.ceil(n_files / TARGET_STEPS)))


@dataclass(frozen=True)
class BatchJob:
    """The settings every file of a run shares.

    Parameters
    ----------
    fetch, preprocess
        Settings of the fetch and pre-processing library functions.
    output_dir, output_name
        Outputs are ``<output_dir>/<output_name>_<key>[_<product>].nc``.
    workdir
        Scratch: each file is fetched, unpacked and merged under ``<workdir>/<key>``.
    products, members
        Products to merge from an archive (None: the whole archive is one product ``data``),
        and the member globs kept when unpacking.
    unpack_limits
        What unpacking one archive may write (archive-bomb guard; None: the fetch defaults).
    files_in_flight
        At most this many files are on scratch at once in one batch (being fetched, waiting, or
        being regridded).
    keep_scratch
        Keep each file's scratch folder after its output is verified (default: remove it).
    source_format
        ``source.format``: ``auto`` (archive members recognised by content) or a forced format.
    neighbour_step
        Set (to ``window.step``) when the time aggregation's windows cross files (09Z rain
        days): each file is then written with the next file's merged input beside it
        (:mod:`.neighbours`). None: files are independent, as without aggregation.
    """

    fetch: FetchSettings
    preprocess: PreprocessSettings
    output_dir: Path
    output_name: str
    workdir: Path
    products: tuple[str, ...] | None = None
    members: tuple[str, ...] | None = None
    unpack_limits: UnpackLimits | None = None
    files_in_flight: int = 4
    keep_scratch: bool = False
    source_format: str = "auto"
    neighbour_step: _dt.timedelta | None = None

    @cached_property
    def settings_digest(self) -> str:
        """The hash of the pre-processing settings, recorded in outputs and in the ledger."""
        return settings_digest(self.preprocess)

    def products_for(self, filename: str) -> list[str]:
        """The products one fetched file gives: ``data`` for netCDF, else the configured ones."""
        if not self.products:  # one product whatever the file is: no need to look at its name
            return ["data"]
        return ["data"] if is_netcdf_name(filename) else list(self.products)

    def output_path(self, key: str, product: str) -> Path:
        """Where the output of one product of one source goes."""
        suffix = "" if product == "data" else f"_{product}"
        return self.output_dir / f"{self.output_name}_{key}{suffix}.nc"

    def outputs_for(self, source: Source) -> dict[str, OutputIdentity]:
        """The outputs a source must have, per product, with what they must be made from."""
        # Planning calls this for every file of the window: skip parsing what cannot matter.
        url = redact_url(source.url) if ("@" in source.url or "?" in source.url) else source.url
        ident = source_identity(url, source.checksum)
        products = self.products_for(source.filename) if self.products else ["data"]
        return {p: OutputIdentity(self.output_path(source.key, p), self.settings_digest, ident)
                for p in products}

    def scratch(self, key: str) -> Path:
        """The scratch folder of one source."""
        return self.workdir / key
