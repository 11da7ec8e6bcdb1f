"""Ops of the fetch-and-regrid workflow. Each is a thin wrapper over a library function.

Every op takes the whole validated :class:`~hpc_workflows.config.WorkflowConfig` (the job's
config mapping hands the same config to all of them), so there is one place where the run is
described and one place where it is validated.
"""


import json
import shutil
import time
from pathlib import Path
from typing import Any

from dagster import (
    Backoff,
    DynamicOut,
    DynamicOutput,
    Failure,
    HookContext,
    Jitter,
    MetadataValue,
    OpExecutionContext,
    Output,
    RetryPolicy,
    failure_hook,
    op,
)

from hpc_workflows.config import WorkflowConfig
from hpc_workflows.fetch import FetchError, Source, fetch, merge_daily, sha256_file, unpack
from hpc_workflows.fetch.errors import redact_url
from hpc_workflows.pipeline.settings import fetch_settings, planned_sources, preprocess_settings, unpack_limits
from hpc_workflows.preprocess import preprocess_file

__all__ = ["plan_sources_op", "fetch_source_op", "regrid_and_write_op", "summarise_op"]

# The transports already retry transient faults inside a step (with backoff, honouring
# Retry-After), so a FetchError is final and bad data is bad every time: both fail the step
# without a step retry (see _final). This policy covers the rest: a full scratch disk, a
# worker killed by the OOM killer mid-write, an NFS hiccup.
STEP_RETRY = RetryPolicy(max_retries=2, delay=5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def _final(exc: Exception) -> Failure:
    """A step failure that Dagster must not retry, with our message as its description."""
    return Failure(description=str(exc), allow_retries=False)

_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


def _workdir(cfg: WorkflowConfig, key: str) -> Path:
    return cfg.output.workdir_path / key


@op(out=DynamicOut(dict), name="plan_sources", tags={"kind": "plan"})
def plan_sources_op(context: OpExecutionContext, config: WorkflowConfig):
    """Turn the window and template/manifest into one dynamic output per source file."""
    sources = planned_sources(config)
    context.log.info(f"planned {len(sources)} source(s): {', '.join(s.key for s in sources[:10])}"
                     + (" ..." if len(sources) > 10 else ""))
    for source in sources:
        yield DynamicOutput(
            {"key": source.key, "url": source.url, "time": source.time,
             "checksum": source.checksum, "size": source.size},
            mapping_key=source.key,
        )


@failure_hook(name="clean_extract_folder")
def clean_extract_folder(context: HookContext) -> None:
    """Remove a failed step's unpack folder. Downloads (.part, resumable) and outputs stay."""
    key = context.step_key.rsplit("[", 1)[-1].rstrip("]") if "[" in context.step_key else None
    if not key:
        return
    cfg = WorkflowConfig(**context.op_config)
    extract = _workdir(cfg, key) / "extract"
    if extract.is_dir():
        shutil.rmtree(extract, ignore_errors=True)
        context.log.info(f"removed temporary folder {extract}")


@op(name="fetch_source", retry_policy=STEP_RETRY, tags={"kind": "fetch"})
def fetch_source_op(context: OpExecutionContext, config: WorkflowConfig, source: dict) -> dict:
    """Fetch one source, unpack it if it is an archive, and merge per product into netCDF."""
    src = Source(**source)
    work = _workdir(config, src.key)
    try:
        return _fetch_source(context, config, src, work)
    except (FetchError, ValueError) as exc:  # retried inside fetch already / corrupt archive
        raise _final(exc) from exc


def _fetch_source(context: OpExecutionContext, config: WorkflowConfig, src: Source, work: Path) -> dict:
    # context.log: retry warnings must reach the run's event log (the UI), not only stderr.
    result = fetch(src, work / "download", fetch_settings(config), log=context.log)
    context.log.info(
        f"{src.key}: {'skipped (already complete and verified)' if result.skipped else 'fetched'} "
        f"{result.path.name}: {result.bytes} bytes in {result.seconds:.2f} s, "
        f"{result.attempts} attempt(s), sha256 {result.sha256[:12]}…"
    )
    fetched = result.as_metadata()

    path = result.path
    if path.name.endswith(_NETCDF_SUFFIXES):
        products = {"data": path}
        merged_sha = {"data": result.sha256}
    else:
        products = _unpack_and_merge(context, config, src, path, work, fresh_download=not result.skipped)
        merged_sha = {p: sha256_file(f) for p, f in products.items()}

    context.add_output_metadata({k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                 for k, v in fetched.items()})
    return {
        "key": src.key,
        # Credentials in a URL must not reach output files, summaries or the UI.
        "url": redact_url(src.url),
        "sha256": result.sha256,
        "skipped": result.skipped,
        "bytes": result.bytes,
        "seconds": result.seconds,
        "products": {p: {"path": str(f), "sha256": merged_sha[p]} for p, f in products.items()},
    }


def _unpack_and_merge(
    context: OpExecutionContext, config: WorkflowConfig, src: Source, archive: Path, work: Path,
    *, fresh_download: bool,
) -> dict[str, Path]:
    """Unpack an archive and merge each product's members into one netCDF for this source."""
    names = config.source.products or ["data"]
    merged = {p: work / "merged" / f"{p}_{src.key}.nc" for p in names}
    if fresh_download:
        # A new download may differ from what an earlier run merged: never reuse those.
        for path in merged.values():
            path.unlink(missing_ok=True)
    elif all(p.is_file() for p in merged.values()):
        context.log.info(f"{src.key}: merged files already complete; not unpacking again")
        return merged
    members = unpack(archive, work / "extract", config.source.members, unpack_limits(config), log=context.log)
    for product, out in merged.items():
        mine = [m for m in members if product == "data" or product in m.name]
        if not mine:
            raise FetchError(
                src, f"no unpacked member matches product {product!r} "
                f"({len(members)} member(s) kept by source.members): check source.members/products"
            )
        merge_daily(sorted(mine), out)
    # The extract folder can be as large as the archive: free the scratch space now.
    shutil.rmtree(work / "extract", ignore_errors=True)
    return merged


@op(name="regrid_and_write", retry_policy=STEP_RETRY, tags={"kind": "regrid"})
def regrid_and_write_op(context: OpExecutionContext, config: WorkflowConfig, fetched: dict) -> dict:
    """Regrid each product of one source and write CF netCDF outputs atomically."""
    settings = preprocess_settings(config)
    outputs = []
    for product, info in fetched["products"].items():
        suffix = "" if product == "data" else f"_{product}"
        target = config.output.directory_path / f"{config.output.name}_{fetched['key']}{suffix}.nc"
        try:
            result = preprocess_file(
                Path(info["path"]), target, settings,
                input_sha256=info["sha256"],
                provenance_sources=[{"url": fetched["url"], "sha256": fetched["sha256"]}],
            )
        except ValueError as exc:  # GridError, RegridError, bad data: the same every time
            raise _final(exc) from exc
        context.log.info(
            f"{fetched['key']}{suffix}: {'skipped (output complete)' if result.skipped else 'wrote'} "
            f"{result.output} in {result.seconds:.2f} s"
        )
        outputs.append(result.as_metadata())
    context.add_output_metadata({"outputs": MetadataValue.json(outputs)})
    return {"key": fetched["key"], "fetch": {k: fetched[k] for k in ("url", "sha256", "skipped", "bytes", "seconds")},
            "outputs": outputs}


@op(name="summarise", tags={"kind": "summary"})
def summarise_op(context: OpExecutionContext, config: WorkflowConfig, results: list[dict]) -> Output[dict]:
    """Write ``run_summary.json`` next to the outputs and report the run's totals."""
    results = sorted(results, key=lambda r: r["key"])
    total_bytes = sum(r["fetch"]["bytes"] for r in results if not r["fetch"]["skipped"])
    fetch_seconds = sum(r["fetch"]["seconds"] for r in results if not r["fetch"]["skipped"])
    summary: dict[str, Any] = {
        "run_id": context.run_id,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": len(results),
        "fetched": sum(1 for r in results if not r["fetch"]["skipped"]),
        "fetch_skipped": sum(1 for r in results if r["fetch"]["skipped"]),
        "bytes_fetched": total_bytes,
        "fetch_mb_per_s": round(total_bytes / 1e6 / fetch_seconds, 2) if fetch_seconds > 0 else None,
        "outputs_written": sum(1 for r in results for o in r["outputs"] if not o["skipped"]),
        "outputs_skipped": sum(1 for r in results for o in r["outputs"] if o["skipped"]),
        "results": results,
    }
    path = config.output.directory_path / "run_summary.json"
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(summary, indent=2, default=str))
    part.replace(path)
    context.log.info(
        f"run summary: {summary['sources']} source(s), {summary['fetched']} fetched, "
        f"{summary['fetch_skipped']} already complete, {summary['outputs_written']} output(s) written, "
        f"{summary['outputs_skipped']} already complete; summary in {path}"
    )
    return Output(summary, metadata={"summary_file": str(path), "sources": summary["sources"],
                                     "outputs_written": summary["outputs_written"],
                                     "outputs_skipped": summary["outputs_skipped"]})
