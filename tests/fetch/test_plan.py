"""Planning sources from a date window + template, or from a manifest."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import yaml

from hpc_workflows.fetch import Source, parse_step, plan_sources, read_manifest

SHA = "sha256:" + "ab" * 32


def test_event_window_daily_chunks_keep_the_hour_in_keys():
    sources = plan_sources(datetime(2020, 2, 14, 18), datetime(2020, 2, 17, 18), "24h",
                           "moose:/adhoc/radar/{dt:%Y%m%d}.tar")
    assert [s.key for s in sources] == ["20200214T18", "20200215T18", "20200216T18", "20200217T18"]
    assert sources[0].url == "moose:/adhoc/radar/20200214.tar"
    assert sources[-1].time == datetime(2020, 2, 17, 18)


@pytest.mark.parametrize(
    ("step", "keys"),
    [
        ("1D", ["20200101", "20200102", "20200103"]),
        (timedelta(days=1), ["20200101", "20200102", "20200103"]),
        ("12h", ["20200101T00", "20200101T12", "20200102T00", "20200102T12", "20200103T00"]),
    ],
)
def test_steps(step, keys):
    sources = plan_sources(datetime(2020, 1, 1), datetime(2020, 1, 3), step, "https://h/x/{dt:%Y%m%dT%H}.grib")
    assert [s.key for s in sources] == keys


@pytest.mark.parametrize("step", ["1MS", "1 month", "month"])
def test_calendar_months(step):
    sources = plan_sources(datetime(2020, 1, 1), datetime(2020, 4, 1), step, "/d/{dt:%Y%m}.nc")
    assert [s.url for s in sources] == ["/d/202001.nc", "/d/202002.nc", "/d/202003.nc", "/d/202004.nc"]
    assert [s.key for s in sources] == ["20200101", "20200201", "20200301", "20200401"]


@pytest.mark.parametrize(("step", "seconds"), [("100ms", 0.1), ("500ms", 0.5)])
def test_milliseconds_are_not_months(step, seconds):
    # pandas' month-start alias is "MS", case-sensitive; "ms" is milliseconds
    from hpc_workflows.fetch.plan import parse_step

    assert parse_step(step).total_seconds() == seconds


def test_iris_sample_data_is_expanded():
    import iris_sample_data

    (source,) = plan_sources(datetime(2020, 1, 1), datetime(2020, 1, 1), "1D", "{iris_sample_data}/x_{dt:%Y}.nc")
    assert source.url == f"{iris_sample_data.path}/x_2020.nc"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("https://h/{dt:%Y%m%d.tar", "malformed"),
        ("https://h/{date:%Y}.tar", "unknown field"),
        ("https://h/static.tar", "no {dt} field"),
        ("https://h/{dt:%Y}.tar", "same url for several dates"),
        ("", "non-empty"),
    ],
)
def test_bad_templates_name_the_field(template, message):
    with pytest.raises(ValueError, match=message) as info:
        plan_sources(datetime(2020, 1, 1), datetime(2020, 1, 3), "1D", template)
    assert "template" in str(info.value)


@pytest.mark.parametrize("step", ["fortnightly", "0h", "-1D", ""])
def test_bad_steps_name_the_field(step):
    with pytest.raises(ValueError, match=r"field: step"):
        parse_step(step)


def test_end_before_start():
    with pytest.raises(ValueError, match=r"field: end"):
        plan_sources(datetime(2020, 1, 3), datetime(2020, 1, 1), "1D", "/x/{dt:%Y%m%d}")


def test_csv_manifest(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"url,checksum,size,time\nhttps://h/a.tar,{SHA},10,2020-02-14T00:00\n"
                        "files/b.tar,,,2020-02-15\n")
    a, b = read_manifest(manifest)
    assert a == Source(key="20200214", url="https://h/a.tar", time=datetime(2020, 2, 14), checksum=SHA, size=10)
    assert b.url == str(tmp_path / "files" / "b.tar") and b.key == "20200215" and b.checksum is None


def test_json_and_yaml_manifests(tmp_path):
    rows = [{"url": "moose:/a/x y.tar", "key": "day_1"}, {"url": "moose:/a/z.tar", "key": "day_2", "checksum": SHA}]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"sources": rows}))
    assert read_manifest(tmp_path / "m.json") == read_manifest(tmp_path / "m.yaml")
    assert [s.key for s in read_manifest(tmp_path / "m.json")] == ["day_1", "day_2"]


def test_manifest_without_keys_or_times_derives_keys_from_names(tmp_path):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(["https://h/a-1.tar", "https://h/b.tar"]))
    assert [s.key for s in read_manifest(tmp_path / "m.yaml")] == ["a_1", "b"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"url": "https://h/a", "checksum": "sha256:xyz"}], r"entry 1.*checksum.*64 hex"),
        ([{"url": "https://h/a", "checksum": "crc32:1234"}], r"checksum.*unknown algorithm"),
        ([{"url": "https://h/a", "checksum": "abcdef"}], r"checksum.*sha256:<64 hex digits>"),
        ([{"url": "https://h/a", "size": "big"}], r"entry 1 \[field: size\]"),
        ([{"url": "https://h/a"}, {"checksum": SHA}], r"entry 2 has no url \[field: url\]"),
        ([{"url": "https://h/a", "time": "yesterday"}], r"field: time"),
        ([{"url": "https://h/a", "key": "bad key!"}], r"field: key"),
        ([{"url": "https://h/a", "sha": "x"}], r"unknown field"),
        ([{"url": "https://h/a.tar"}, {"url": "https://g/a.tar"}], r"duplicate keys"),
        ([], r"non-empty list"),
    ],
)
def test_bad_manifests_name_entry_and_field(tmp_path, rows, message):
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=message) as info:
        read_manifest(manifest)
    assert "bad.json" in str(info.value)


def test_manifest_format_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown format"):
        read_manifest(tmp_path / "m.txt")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(tmp_path / "m.json")
    (tmp_path / "m.csv").write_text("path,size\n/a,1\n")
    with pytest.raises(ValueError, match="'url' column"):
        read_manifest(tmp_path / "m.csv")
