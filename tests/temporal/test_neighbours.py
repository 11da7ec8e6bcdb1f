"""Windows that cross daily files, through preprocess_file's ``neighbours`` and ``period``.

09:00-09:00 UTC rain days over two daily files are checked against plain numpy sums of the
generating function; a window whose neighbour file is absent is missing, not half a day.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hpc_workflows.preprocess import PreprocessSettings, preprocess_file
from hpc_workflows.temporal import TimeAggregation
from tests.temporal.synthetic import TARGET, day_times, window_sum, write_day

D1, D2 = dt.date(2020, 2, 14), dt.date(2020, 2, 15)


def _settings(tmp: Path, **rules) -> PreprocessSettings:
    return PreprocessSettings(target=TARGET, method="conservative", weights_dir=str(tmp / "w"),
                              time_aggregation=TimeAggregation(how="sum", scale=1 / 12,
                                                               units="mm", **rules))


def _period(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time())
    return start, start + dt.timedelta(days=1)


@pytest.fixture
def days(tmp_path: Path) -> dict[dt.date, Path]:
    """Two daily files, 00:00..23:55; the day before and the day after do not exist."""
    files = {d: tmp_path / f"rain_{d:%Y%m%d}.nc" for d in
             (D1 - dt.timedelta(days=1), D1, D2, D2 + dt.timedelta(days=1))}
    for d in (D1, D2):
        write_day(files[d], day_times(d))
    return files


def _neighbours(files: dict[dt.date, Path], day: dt.date) -> list[Path]:
    return [files[day - dt.timedelta(days=1)], files[day + dt.timedelta(days=1)]]


def test_rain_days_09z_over_two_daily_files(tmp_path: Path, days) -> None:
    settings = _settings(tmp_path, freq="1D", offset="9h")
    out1 = tmp_path / "out" / "d1.nc"
    r1 = preprocess_file(days[D1], out1, settings, input_sha256="a",
                         neighbours=_neighbours(days, D1), period=_period(D1))
    with xr.open_dataset(out1) as ds:
        assert ds.sizes["time"] == 1 and ds.sample_count.values.tolist() == [288]
        np.testing.assert_array_equal(ds.time_bnds.values[0], np.array(
            ["2020-02-14T09:00", "2020-02-15T09:00"], dtype="datetime64[ns]"))
        np.testing.assert_allclose(ds.rainfall_rate.values[0],
                                   window_sum("2020-02-14T09:00", "2020-02-15T09:00"), rtol=1e-5)
        assert ds.rainfall_rate.attrs["units"] == "mm"
        assert "sample_count" in ds.rainfall_rate.attrs["ancillary_variables"]
    assert r1.incomplete_windows == 0 and r1.as_metadata()["incomplete_windows"] == 0
    assert r1.missing_neighbours == [str(days[D1 - dt.timedelta(days=1)])]

    # The second day's rain day needs the (absent) third file: missing, not 15 hours' worth.
    out2 = tmp_path / "out" / "d2.nc"
    r2 = preprocess_file(days[D2], out2, settings, input_sha256="b",
                         neighbours=_neighbours(days, D2), period=_period(D2))
    with xr.open_dataset(out2) as ds:
        assert ds.sample_count.values.tolist() == [180]
        assert np.isnan(ds.rainfall_rate.values).all()
    assert r2.incomplete_windows == 1
    assert str(days[D2 + dt.timedelta(days=1)]) in r2.as_metadata()["missing_neighbours"]


def test_without_neighbours_a_crossing_window_is_missing(tmp_path: Path, days) -> None:
    out = tmp_path / "alone.nc"
    result = preprocess_file(days[D1], out, _settings(tmp_path, freq="1D", offset="9h"),
                             input_sha256="a", period=_period(D1))
    with xr.open_dataset(out) as ds:
        assert ds.sample_count.values.tolist() == [180]
        assert np.isnan(ds.rainfall_rate.values).all()
    assert result.incomplete_windows == 1


def test_last_window_takes_the_next_files_first_value(tmp_path: Path, days) -> None:
    """Values ending at their time: 21:00-24:00 needs the next file's 00:00 (the '24:00')."""
    settings = _settings(tmp_path, freq="3h", input_interval="ending")
    out = tmp_path / "d1_3h.nc"
    result = preprocess_file(days[D1], out, settings, input_sha256="a",
                             neighbours=_neighbours(days, D1), period=_period(D1))
    with xr.open_dataset(out) as ds:
        assert ds.sizes["time"] == 8 and ds.sample_count.values.tolist() == [36] * 8
        for w in range(8):
            start = np.datetime64("2020-02-14T00:00") + np.timedelta64(3 * w, "h")
            ref = window_sum(str(start), str(start + np.timedelta64(3, "h")), ending=True)
            np.testing.assert_allclose(ds.rainfall_rate.values[w], ref, rtol=1e-5)
    assert result.incomplete_windows == 0
    # Without the next file, the last window has 35 of 36 and is missing.
    alone = preprocess_file(days[D1], tmp_path / "alone_3h.nc", settings, input_sha256="a",
                            period=_period(D1))
    with xr.open_dataset(alone.output) as ds:
        assert ds.sample_count.values[-1] == 35 and np.isnan(ds.rainfall_rate.values[-1]).all()
        assert np.isfinite(ds.rainfall_rate.values[:-1]).all()


def test_period_reports_windows_absent_from_the_file(tmp_path: Path) -> None:
    """A file whose last three hours never came: with the period, that window is written
    (missing, sample_count 0) instead of silently not existing."""
    times = day_times(D1)
    path = write_day(tmp_path / "short.nc", times,
                     absent=[str(t) for t in times[times.hour >= 21]])
    settings = _settings(tmp_path, freq="3h")
    result = preprocess_file(path, tmp_path / "short_3h.nc", settings, input_sha256="s",
                             period=_period(D1))
    with xr.open_dataset(result.output) as ds:
        assert ds.sizes["time"] == 8 and ds.sample_count.values[-1] == 0
        assert np.isnan(ds.rainfall_rate.values[-1]).all()
    assert result.incomplete_windows == 1


def test_rerun_skips_until_a_missing_neighbour_arrives(tmp_path: Path, days) -> None:
    settings = _settings(tmp_path, freq="1D", offset="9h")
    out = tmp_path / "d2.nc"
    kwargs = dict(input_sha256="b", neighbours=_neighbours(days, D2), period=_period(D2))
    first = preprocess_file(days[D2], out, settings, **kwargs)
    again = preprocess_file(days[D2], out, settings, **kwargs)
    assert not first.skipped and again.skipped and again.incomplete_windows == 1
    d3 = D2 + dt.timedelta(days=1)
    write_day(days[d3], day_times(d3))
    rebuilt = preprocess_file(days[D2], out, settings, **kwargs)
    assert not rebuilt.skipped and rebuilt.incomplete_windows == 0
    with xr.open_dataset(out) as ds:
        np.testing.assert_allclose(ds.rainfall_rate.values[0],
                                   window_sum("2020-02-15T09:00", "2020-02-16T09:00"), rtol=1e-5)


def test_neighbour_of_another_grid_is_refused(tmp_path: Path, days) -> None:
    other = tmp_path / "other.nc"
    ds = xr.open_dataset(days[D2]).isel(lat=slice(0, 2))
    ds.to_netcdf(other)
    ds.close()
    with pytest.raises(ValueError, match="different grid"):
        preprocess_file(days[D1], tmp_path / "x.nc", _settings(tmp_path, freq="1D", offset="9h"),
                        input_sha256="a", neighbours=[other], period=_period(D1))
    assert not (tmp_path / "x.nc").exists() and os.listdir(tmp_path).count("x.nc.part") == 0


def test_plan_neighbours_for_a_run_of_daily_files(tmp_path: Path, days) -> None:
    """What the pipeline passes: each day's neighbours in the run, and its day as period;
    aggregating every day of the run with it writes each rain day exactly once."""
    from hpc_workflows.temporal import plan_neighbours

    run = [(dt.datetime.combine(d, dt.time()), days[d]) for d in (D1, D2)]
    plan = plan_neighbours(run, dt.timedelta(days=1))
    assert plan[days[D1]] == ([days[D2]], _period(D1))
    assert plan[days[D2]] == ([days[D1]], _period(D2))
    settings = _settings(tmp_path, freq="1D", offset="9h")
    starts = []
    for _, path in run:
        neighbours, period = plan[path]
        result = preprocess_file(path, tmp_path / f"{path.stem}_out.nc", settings,
                                 input_sha256=path.name, neighbours=neighbours, period=period)
        with xr.open_dataset(result.output) as ds:
            starts += [str(t) for t in ds.time_bnds.values[:, 0]]
    assert starts == ["2020-02-14T09:00:00.000000000", "2020-02-15T09:00:00.000000000"]
