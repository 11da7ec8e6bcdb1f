"""Batched, throttled recalls with the stand-in `moo` (tests/fakes/moo), partial failures included."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hpc_workflows.fetch import FetchSettings, Source
from hpc_workflows.fetch.recall import build_batch_argv, fetch_batch
from tests.hpc.conftest import wait_until

BATCH = ["moo", "get", "-f", "{src}", "{dest_dir}"]
REPO = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, **kw) -> FetchSettings:
    base = dict(transport="command", command=["moo", "get", "-f", "{src}", "{dest}"], batch_command=BATCH,
                retries=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.1,
                host_lock_dir=str(tmp_path / "slots"))
    base.update(kw)
    return FetchSettings(**base)


def _calls() -> list[list[str]]:
    path = Path(os.environ["FAKE_MOO_STATE"] + ".argv")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _archive(root: Path, names: list[str], checksums: bool = True) -> list[Source]:
    (root / "radar").mkdir(exist_ok=True)
    out = []
    for name in names:
        data = os.urandom(20_000)
        (root / "radar" / name).write_bytes(data)
        out.append(Source(key=name.split(".")[0], url=f"moose:/radar/{name}",
                          checksum="sha256:" + hashlib.sha256(data).hexdigest() if checksums else None))
    return out


def _in_place(sources: list[Source], moo: Path, dest: Path) -> None:
    for s in sources:
        assert (dest / s.filename).read_bytes() == (moo / "radar" / s.filename).read_bytes()
    assert not list(dest.glob(".recall-*")) and not list(dest.glob("*.part"))


def test_build_batch_argv_expands_src_once_per_file():
    assert build_batch_argv(BATCH, ["moose:/a", "moose:/b c"], "/d") == ["moo", "get", "-f", "moose:/a", "moose:/b c", "/d"]


def test_one_command_recalls_the_whole_batch(moo, tmp_path):
    sources = _archive(moo, [f"2020021{i}.tar" for i in range(5)])
    outcome = fetch_batch(sources, tmp_path / "dl", _settings(tmp_path))
    assert outcome.ok and outcome.commands == 1
    (argv,) = _calls()
    assert argv[:2] == ["get", "-f"] and argv[2:7] == [s.url for s in sources]
    _in_place(sources, moo, tmp_path / "dl")
    assert {r.verified for r in outcome.results.values()} == {s.checksum for s in sources}
    again = fetch_batch(sources, tmp_path / "dl", _settings(tmp_path))
    assert again.ok and again.commands == 0 and all(r.skipped for r in again.results.values())
    assert len(_calls()) == 1


def test_partial_failure_recalls_only_the_missing_files(moo, tmp_path, monkeypatch):
    sources = _archive(moo, ["a.tar", "b.tar", "c.tar", "d.tar"])
    monkeypatch.setenv("FAKE_MOO_FLAKY", "b.tar,d.tar")
    outcome = fetch_batch(sources, tmp_path / "dl", _settings(tmp_path))
    assert outcome.ok and outcome.commands == 2
    first, second = _calls()
    assert first[2:-1] == [s.url for s in sources]
    assert second[2:-1] == ["moose:/radar/b.tar", "moose:/radar/d.tar"]
    assert outcome.results["a"].attempts == 1 and outcome.results["b"].attempts == 2
    _in_place(sources, moo, tmp_path / "dl")


def test_client_dying_mid_transfer_leaves_nothing_half_written(moo, tmp_path, monkeypatch):
    sources = _archive(moo, ["a.tar", "b.tar"], checksums=False)
    monkeypatch.setenv("FAKE_MOO_FAIL_FIRST", "1")  # writes half of a.tar, then exits 3
    outcome = fetch_batch(sources, tmp_path / "dl", _settings(tmp_path, retries=0))
    assert not outcome.ok and set(outcome.failures) == {"a", "b"}
    assert "exited with status 3" in str(outcome.failures["a"])
    assert list((tmp_path / "dl").iterdir()) == []
    # The next run recalls both, whole.
    outcome = fetch_batch(sources, tmp_path / "dl", _settings(tmp_path))
    assert outcome.ok
    _in_place(sources, moo, tmp_path / "dl")


def test_missing_file_with_permanent_status_fails_alone(moo, tmp_path):
    sources = _archive(moo, ["a.tar", "b.tar"]) + [Source(key="gone", url="moose:/radar/gone.tar")]
    outcome = fetch_batch(sources, tmp_path / "dl", _settings(tmp_path, command_permanent_exit_codes=[2]))
    assert set(outcome.results) == {"a", "b"} and set(outcome.failures) == {"gone"}
    assert "TSSC_NO_SUCH_DATA" in str(outcome.failures["gone"]) and outcome.commands == 1


def test_wrong_checksum_is_recalled_again_then_fails_alone(moo, tmp_path):
    good = _archive(moo, ["a.tar"])
    (moo / "radar" / "b.tar").write_bytes(b"b")
    bad = Source(key="b", url="moose:/radar/b.tar", checksum="sha256:" + "0" * 64)
    outcome = fetch_batch(good + [bad], tmp_path / "dl", _settings(tmp_path, retries=1))
    assert set(outcome.results) == {"a"} and "checksum mismatch" in str(outcome.failures["b"])
    assert [c[2:-1] for c in _calls()] == [["moose:/radar/a.tar", "moose:/radar/b.tar"], ["moose:/radar/b.tar"]]
    assert not (tmp_path / "dl" / "b.tar").exists()


def test_option_like_source_is_refused_before_the_client_runs(moo, tmp_path):
    with pytest.raises(ValueError, match="would read it as an option"):
        fetch_batch([Source(key="x", url="-oX:/radar/a.tar")], tmp_path / "dl", _settings(tmp_path))
    assert _calls() == []


_WORKER = """
import sys
from pathlib import Path
from hpc_workflows.fetch import FetchSettings, Source
from hpc_workflows.fetch.recall import fetch_batch
import os, time
dest, slots, limit, gate, *names = sys.argv[1:]
# Start together: a client that starts late under load could never overlap the others.
Path(gate, f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 120
while not Path(gate, "go").exists() and time.monotonic() < deadline:
    time.sleep(0.01)  # polling the gate file, bounded by the deadline
settings = FetchSettings(transport="command", command=["moo", "get", "-f", "{src}", "{dest}"],
                         batch_command=["moo", "get", "-f", "{src}", "{dest_dir}"], host_lock_dir=slots,
                         max_archive_commands=int(limit))
out = fetch_batch([Source(key=n.split(".")[0], url="moose:/radar/" + n) for n in names], Path(dest), settings)
sys.exit(0 if out.ok else 1)
"""


def _intervals() -> list[tuple[float, float]]:
    text = Path(os.environ["FAKE_MOO_STATE"] + ".times").read_text()
    return sorted(tuple(map(float, line.split())) for line in text.splitlines())


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("limit", [1, 2])
def test_concurrent_recalls_are_capped_across_threads_and_processes(moo, tmp_path, monkeypatch, limit):
    """Four client processes started together; every client call holds 1 s mid-transfer."""
    names = [f"f{i}.tar" for i in range(8)]
    _archive(moo, names, checksums=False)
    monkeypatch.setenv("FAKE_MOO_HOLD", "1.0")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    gate = tmp_path / "gate"
    gate.mkdir()
    procs = []
    for p in range(2):
        for t in range(2):
            batch = names[(2 * p + t) * 2:(2 * p + t) * 2 + 2]
            procs.append(subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / "dl"),
                                           str(tmp_path / "slots"), str(limit), str(gate), *batch], env=env))
    wait_until(lambda: len(list(gate.glob("ready-*"))) == 4, 120, "the four clients to be ready")
    (gate / "go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    intervals = _intervals()
    assert len(intervals) == 4
    assert _max_overlap(intervals) <= limit
    if limit == 2:  # the measurement can see overlap: without a cap all four would run at once
        assert _max_overlap(intervals) == 2


def test_threads_of_one_process_share_the_cap(moo, tmp_path, monkeypatch):
    names = [f"g{i}.tar" for i in range(3)]
    sources = _archive(moo, names, checksums=False)
    monkeypatch.setenv("FAKE_MOO_HOLD", "0.2")
    settings = _settings(tmp_path, max_archive_commands=1)
    threads = [threading.Thread(target=fetch_batch, args=([s], tmp_path / "dl", settings)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert _max_overlap(_intervals()) == 1
    _in_place(sources, moo, tmp_path / "dl")


def test_batch_settings_are_checked_with_the_config(tmp_path):
    from hpc_workflows.config import ConfigValidationError, validate_workflow_config

    def cfg(template: str, batch: list[str], **extra) -> dict:
        return {"window": {"start": "2020-02-14", "end": "2020-02-14"},
                "source": {"template": template, "transport": "command",
                           "command": ["moo", "get", "-f", "--", "{src}", "{dest}"], "batch_command": batch, **extra},
                "regrid": {"target": {"name": "global_10deg"}}, "output": {"directory": str(tmp_path / "o")}}

    with pytest.raises(ConfigValidationError, match=r"source.batch_command.*must be an argument on its own"):
        validate_workflow_config(cfg("moose:/r/{dt:%Y%m%d}.tar", ["moo", "get", "x{src}", "{dest_dir}"]))
    with pytest.raises(ConfigValidationError, match=r"'-x20200214.tar' \(from '\{src\}'"):
        validate_workflow_config(cfg("-x{dt:%Y%m%d}.tar", BATCH))
    with pytest.raises(ConfigValidationError, match="max_archive_commands=0 must be 1 or more"):
        validate_workflow_config(cfg("moose:/r/{dt:%Y%m%d}.tar", BATCH, max_archive_commands=0))
    validate_workflow_config(cfg("moose:/r/{dt:%Y%m%d}.tar", BATCH))


def test_slot_folder_comes_from_the_config(tmp_path):
    """A shared folder for the slot files is what extends the caps across nodes."""
    from hpc_workflows.config import validate_workflow_config
    from hpc_workflows.pipeline.settings import fetch_settings

    raw = {"window": {"start": "2020-02-14", "end": "2020-02-14"},
           "source": {"template": "moose:/r/{dt:%Y%m%d}.tar", "transport": "command",
                      "command": ["moo", "get", "-f", "{src}", "{dest}"], "batch_command": BATCH,
                      "max_archive_commands": 3, "slot_dir": str(tmp_path / "shared" / "slots")},
           "regrid": {"target": {"name": "global_10deg"}}, "output": {"directory": str(tmp_path / "o")}}
    settings = fetch_settings(validate_workflow_config(raw))
    assert settings.host_lock_dir == str(tmp_path / "shared" / "slots")
    assert settings.max_archive_commands == 3 and settings.batch_command == BATCH
    del raw["source"]["slot_dir"]
    assert fetch_settings(validate_workflow_config(raw)).host_lock_dir == "auto"
