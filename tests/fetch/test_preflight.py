"""Config validation catches bad URLs and option-injecting file names before any work starts."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import yaml

from hpc_workflows.cli import main as cli_main
from hpc_workflows.config import ConfigValidationError, validate_workflow_config
from hpc_workflows.fetch import FetchError, FetchSettings, Source, fetch
from hpc_workflows.fetch.preflight import check_url

MOO = ["moo", "get", "-f", "{src}", "{dest}"]


def _cfg(tmp_path: Path, **source) -> dict:
    return {
        "window": {"start": "2020-02-14", "end": "2020-02-15", "step": "24h"},
        "source": source,
        "regrid": {"method": "conservative", "target": {"name": "global_10deg"}},
        "output": {"directory": str(tmp_path / "out")},
    }


def _check_config(tmp_path: Path, cfg: dict, capsys) -> tuple[int, str]:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"ops": {"fetch_and_regrid": {"config": cfg}}}))
    rc = cli_main(["check-config", str(path)])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize(
    "template, expected",
    [
        ("http://h:99999/data/{dt:%Y%m%d}.nc", "the port '99999' is not a number from 1 to 65535"),
        ("http://[::1/data/{dt:%Y%m%d}.nc", "write an IPv6 host in brackets"),
        ("https://h:http/data/{dt:%Y%m%d}.nc", "the port 'http' is not a number"),
        ("http://[::g]:80/data/{dt:%Y%m%d}.nc", "IPv6"),
        ("http:///data/{dt:%Y%m%d}.nc", "has no host"),
        ("http://h/my data/{dt:%Y%m%d}.nc", "percent-encode spaces as %20"),
        ("gopher://h/data/{dt:%Y%m%d}.nc", "unknown URL scheme 'gopher'"),
    ],
)
def test_check_config_rejects_bad_urls(tmp_path, capsys, template, expected):
    rc, text = _check_config(tmp_path, _cfg(tmp_path, template=template), capsys)
    assert rc == 1, text
    assert "source.template" in text and "'20200214'" in text and expected in text
    assert "Traceback" not in text


@pytest.mark.parametrize("url", ["http://[::1]:8080/a.nc", "https://alice:s3cret@data.example.org:443/x/a.nc",
                                 "http://127.0.0.1/a%20b.nc", "https://h_1.example/a.nc", "http://[fe80::1%25eth0]/a"])
def test_good_urls_pass(url):
    check_url(url)


def test_option_like_template_is_refused_for_the_command_transport(tmp_path, capsys):
    cfg = _cfg(tmp_path, template="-oX{dt:%Y%m%d}.nc", transport="command", command=MOO)
    rc, text = _check_config(tmp_path, cfg, capsys)
    assert rc == 1
    assert "'-oX20200214.nc'" in text and "would read it as an option" in text and "'--'" in text


def test_option_like_manifest_entry_is_refused(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"url": "moose:/adhoc/a.tar", "key": "a"},
                                    {"url": "-oX:/adhoc/b.tar", "key": "b"}]))
    with pytest.raises(ConfigValidationError) as err:
        validate_workflow_config(_cfg(tmp_path, manifest=str(manifest), transport="command", command=MOO))
    assert "source.manifest" in str(err.value) and "'b'" in str(err.value) and "'-oX:/adhoc/b.tar'" in str(err.value)


def test_option_like_name_placeholder_is_refused_and_end_of_options_allows_it(tmp_path):
    template = "moose:/adhoc/-x{dt:%Y%m%d}.nc"
    with pytest.raises(ConfigValidationError, match=r"'-x20200214.nc' \(from '\{name\}'"):
        validate_workflow_config(_cfg(tmp_path, template=template, transport="command",
                                      command=["hsi", "get", "{name}", ":", "{src}", "{dest}"]))
    # After '--' the client reads no options, so the same names are fine.
    validate_workflow_config(_cfg(tmp_path, template=template, transport="command",
                                  command=["hsi", "get", "--", "{name}", "{src}", "{dest}"]))


def test_shell_command_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hpc_workflows.fetch"):
        validate_workflow_config(_cfg(tmp_path, template="moose:/adhoc/{dt:%Y%m%d}.tar", transport="command",
                                      command=["bash", "-c", "moo get {src} {dest}"]))
    assert "runs a shell (bash -c)" in caplog.text and "shell-free guarantee no longer holds" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpc_workflows.fetch"):
        validate_workflow_config(_cfg(tmp_path, template="moose:/adhoc/{dt:%Y%m%d}.tar", transport="command",
                                      command=MOO))
    assert "shell" not in caplog.text


def test_library_callers_are_guarded_too(moo, tmp_path):
    """fetch() itself refuses, without running the client, a source that would be an option."""
    (moo / "adhoc").mkdir()
    (moo / "adhoc" / "a.tar").write_bytes(b"x")
    settings = FetchSettings(transport="command", command=["moo", "get", "{src}", "{dest}"], retries=2)
    with pytest.raises(FetchError) as err:
        fetch(Source(key="k", url="-f:moose:/adhoc/a.tar"), tmp_path / "dl", settings)
    assert err.value.attempts == 1 and "would read it as an option" in str(err.value)
    assert not Path(os.environ["FAKE_MOO_STATE"] + ".argv").exists()
