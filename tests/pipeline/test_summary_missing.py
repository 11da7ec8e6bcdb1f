"""A run whose summary lacks planned files fails, naming them (re-execution from failure can
leave out batch steps that had not started: dagster-io/dagster#19490)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import Failure, build_op_context

from hpc_workflows.batching import run_batch
from hpc_workflows.batching.results import RESULTS_DIR, write_results
from hpc_workflows.config import validate_workflow_config
from hpc_workflows.pipeline.ops import summarise_op
from hpc_workflows.pipeline.settings import batch_job, planned_sources
from tests.batching.conftest import make_sources


def _setup(tmp: Path):
    make_sources(tmp / "archive", 4)
    cfg = validate_workflow_config({
        "window": {"start": "2020-01-01", "end": "2020-01-04", "step": "24h"},
        "source": {"template": str(tmp / "archive") + "/{dt:%Y%m%d}.nc", "retries": 0},
        "regrid": {"method": "conservative", "target": {"name": "global_10deg"},
                   "weights_dir": str(tmp / "weights")},
        "output": {"directory": str(tmp / "out"), "name": "tas"},
    })
    sources = planned_sources(cfg)
    job = batch_job(cfg)
    first, second = sources[:2], sources[2:]
    plan = {"sources": len(sources), "planning_seconds": 0.0, "files_per_step": 2, "batches": 2,
            "already_complete": 0, "complete_file": None}
    outputs = []
    for i, batch in enumerate((first, second)):  # what each batch step leaves and passes on
        path = tmp / "storage" / "run" / RESULTS_DIR / f"{i}.jsonl"
        write_results(path, (r.as_dict() for r in run_batch(batch, job)))
        outputs.append({"results_file": str(path), "files": len(batch)})
    return cfg, plan, outputs


def test_a_batch_without_results_fails_the_summary_naming_its_files(tmp_path):
    cfg, plan, results = _setup(tmp_path)
    with build_op_context() as context, pytest.raises(Failure) as failure:
        summarise_op(context, config=cfg, plan=plan, batches=results[:1], regridded=[])
    assert "2 planned file(s) have no result" in failure.value.description
    assert "20200103, 20200104" in failure.value.description
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["missing"] == ["20200103", "20200104"] and summary["outputs_written"] == 2
    assert (tmp_path / "storage" / "run" / RESULTS_DIR).exists()  # kept for a re-execution


def test_every_batch_present_summarises(tmp_path):
    cfg, plan, results = _setup(tmp_path)
    with build_op_context() as context:
        out = summarise_op(context, config=cfg, plan=plan, batches=results, regridded=[])
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert "missing" not in summary and summary["outputs_written"] == 4
    assert [r["key"] for r in summary["results"]] == ["20200101", "20200102", "20200103", "20200104"]
    assert out.value["sources"] == 4
    assert not (tmp_path / "storage" / "run" / RESULTS_DIR).exists()  # in the summary now
