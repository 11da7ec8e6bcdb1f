"""``hpc-workflows check-config``: the whole file, every problem, short, before anything runs
(issue 12, goals 4 and 5). Run as a user runs it: the console script in a subprocess, so
everything it prints is checked (no traceback)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpc_workflows.hpc.settings import validate_executor_settings
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hpc-workflows"), "check-config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text


def _slurm_config(demo_run_config, tmp_path: Path, slurm_lines: str, extra: str = "") -> Path:
    """The demo config with a hand-written execution block (as a user types it: unquoted)."""
    cfg = copy.deepcopy(demo_run_config)
    del cfg["execution"]
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg) + extra + "execution:\n  config:\n    cluster:\n"
                    "      slurm:\n" + slurm_lines + "    scale: 1\n")
    return path


@pytest.mark.slow
def test_execution_errors_unknown_keys_and_loggers_all_reported(demo_run_config, tmp_path):
    path = _slurm_config(
        demo_run_config, tmp_path,
        "        queue: debug\n        walltime: 12:00:00\n        memory: 8000\n",
        extra="bogus_section: 1\nloggers:\n  colsole: {}\n",
    )
    proc = _check(path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "OK" not in proc.stdout
    # walltime: YAML's base-60 reading, the text that was meant, where it is in the file
    line = 1 + next(i for i, t in enumerate(path.read_text().splitlines()) if "walltime:" in t)
    assert "execution.config.cluster.slurm.walltime" in out
    assert "YAML reads an unquoted 12:00:00 as 43200 seconds" in out
    assert "write it as a quoted 'HH:MM:SS', e.g. walltime: \"12:00:00\"" in out
    assert f"line {line}, column 19: 12:00:00" in out
    assert "execution.config.cluster.slurm.memory" in out and "add a unit, e.g. '8GB'" in out
    assert "unknown key 'bogus_section'" in out and "allowed here: execution, loggers, ops" in out
    assert "loggers: unknown key 'colsole'" in out and "console" in out
    assert "Input should be a valid string" not in out
    _assert_no_traceback(out)
    assert len(out.splitlines()) < 12, out


@pytest.mark.slow
def test_minutes_walltime_warns_but_passes(demo_run_config, tmp_path):
    path = _slurm_config(demo_run_config, tmp_path,
                         '        queue: debug\n        walltime: "2:00"\n        memory: 2GB\n')
    proc = _check(path)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
    assert "warning: execution.config.cluster.slurm.walltime '2:00' is 2 minutes" in proc.stderr
    assert "write '02:00:00'" in proc.stderr


@pytest.mark.parametrize(("text", "line", "column", "hint"), [
    ("ops:\n  fetch_and_regrid:\n    config:\n      output:\n        name: a: b\n",
     5, 16, "a value containing ': ' must be quoted"),
    ("ops:\n  fetch_and_regrid:\n    config:\n\t  output: {}\n", 4, 1, "indent with spaces, not tabs"),
    ("ops:\n  fetch_and_regrid:\n    config:\n      output:\n        name: abc\n       x: 1\n",
     6, 8, "line this key up"),
    ('ops:\n  fetch_and_regrid:\n    config:\n      output:\n        name: "abc\n', 6, 1,
     "a quote or bracket is not closed"),
], ids=["colon", "tab", "indent", "quote"])
def test_yaml_mistakes_get_line_column_and_hint(tmp_path, text, line, column, hint):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    proc = _check(path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert f"run.yaml, line {line}, column {column}:" in out and f"hint: {hint}" in out, out
    _assert_no_traceback(out)


@pytest.mark.parametrize(("config", "message"), [
    ({"walltime": 7200}, "write it as a quoted 'HH:MM:SS', e.g. walltime: \"02:00:00\""),
    ({"walltime": 43200}, "unquoted 12:00:00 as 43200 seconds"),
    ({"walltime": 1800}, "unquoted 30:00 as 1800 seconds"),
    ({"lifetime_margin": 300}, "lifetime_margin: \"00:05:00\""),
    ({"memory": 8000}, "memory 8000 has no unit: add a unit, e.g. '8GB'"),
    ({"memory": "8000"}, "memory '8000' has no unit"),
])
def test_numbers_where_text_is_meant_say_what_to_write(config, message):
    with pytest.raises(ValueError) as err:
        validate_executor_settings({"cluster": {"slurm": config}, "scale": 1})
    assert message in str(err.value)
    assert "valid string" not in str(err.value)


def test_local_memory_limit_without_unit():
    with pytest.raises(ValueError, match="memory_limit 2000 has no unit"):
        validate_executor_settings({"cluster": {"local": {"memory_limit": 2000}}})


@pytest.mark.slow
def test_dagster_job_execute_with_bad_execution_config_prints_only_the_message(
        demo_run_config, tmp_path, dagster_home):
    path = _slurm_config(demo_run_config, tmp_path,
                         "        queue: debug\n        walltime: 12:00:00\n")
    proc = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "hpc_workflows", "-j", "fetch_and_regrid",
         "-c", str(path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error: invalid HPC executor config:" in out, out[-3000:]
    assert "write it as a quoted 'HH:MM:SS', e.g. walltime: \"12:00:00\"" in out
    _assert_no_traceback(out)


@pytest.mark.slow
def test_unknown_workflow_key_reported_with_the_workflows_own_errors(demo_run_config, tmp_path):
    cfg = copy.deepcopy(demo_run_config)
    workflow = cfg["ops"]["fetch_and_regrid"]["config"]
    workflow["windw"] = {}
    workflow["window"]["end"] = "1999-01-01"
    workflow["output"]["compression_level"] = "x"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _check(path)
    out = proc.stderr
    assert proc.returncode == 1
    assert "ops.fetch_and_regrid.config: unknown key 'windw'" in out and "window" in out
    assert "set end on or after start" in out
    # one line for the bad compression level: ours, not Dagster's "Invalid scalar" as well
    assert out.count("compression_level") == 1, out
    _assert_no_traceback(out)


@pytest.mark.slow
def test_env_values_are_resolved_as_dagster_resolves_them(demo_run_config, tmp_path, monkeypatch):
    cfg = copy.deepcopy(demo_run_config)
    cfg["ops"]["fetch_and_regrid"]["config"]["output"]["directory"] = {"env": "HPCW_TEST_OUT_DIR"}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("HPCW_TEST_OUT_DIR", str(tmp_path / "out"))
    proc = _check(path)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
