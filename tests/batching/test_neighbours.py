"""When a run's windows cross files, and which source follows each one."""

from __future__ import annotations

import datetime as dt

import pytest

from hpc_workflows.batching.neighbours import crosses_files, following_sources
from hpc_workflows.fetch import Source
from hpc_workflows.temporal import TimeAggregation

DAY = dt.timedelta(days=1)


@pytest.mark.parametrize("rules, crosses", [
    (None, False),
    ({"freq": "3h"}, False),  # instantaneous 3-hourly windows tile a day: files independent
    ({"freq": "24h"}, False),
    ({"freq": "24h", "offset": "9h"}, True),  # 09Z rain days
    ({"freq": "3h", "input_interval": "ending"}, True),  # 21:00-24:00 needs the next 00:00
    ({"freq": "7h"}, True),  # windows that do not tile a day
])
def test_crosses_files(rules, crosses):
    agg = TimeAggregation(how="sum", **rules) if rules else None
    assert crosses_files(agg, DAY) is crosses


def test_calendar_steps_are_left_alone():
    import pandas as pd

    assert not crosses_files(TimeAggregation(freq="24h", offset="9h"), pd.DateOffset(months=1))


def test_each_source_is_followed_by_the_next_date_of_the_run():
    t0 = dt.datetime(2020, 2, 14)
    run = [Source(key=f"d{i}", url=f"/a/{i}.nc", time=t0 + i * DAY) for i in (0, 1, 3)]
    found = following_sources(run, DAY)
    assert found["d0"] == (run[1], (t0, t0 + DAY))
    assert found["d1"][0] is None  # 16 February is not in the run: no neighbour, window missing
    assert found["d3"][0] is None
