"""Which file's steps a file's time windows also need: the next file, when windows cross files.

A 09:00-09:00 rain day owned by the 14 February file needs the first nine hours of the
15 February file; 3-hourly sums of values ending at their time need the next file's 00:00
value. The temporal library does the reading (:func:`hpc_workflows.temporal.preprocess_file`'s
``neighbours`` and ``period``); this module only decides, for a run of files one
``window.step`` apart, whether the aggregation crosses files at all and which source follows
each one, so a batch can keep that source's merged input on scratch (or fetch it, when it
belongs to another batch) until the file is written.

Only the FOLLOWING file is a neighbour: with ``period`` each file owns the windows that start
in its own period, and a window starting in ``[start, start + step)`` reaches forward, never
back, into the next file (when ``freq`` is at most ``step``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

from hpc_workflows.fetch import Source
from hpc_workflows.temporal.rules import TimeAggregation

__all__ = ["crosses_files", "following_sources"]


def crosses_files(agg: TimeAggregation | None, file_step: _dt.timedelta | object) -> bool:
    """Whether windows of ``agg`` over files ``file_step`` apart need the next file's steps.

    True for an offset from midnight (09Z rain days), for values that end at their time (a
    window's last value is the next file's first) and for windows that do not tile a file.
    False without aggregation, or for calendar steps (months): then nothing changes.

    Parameters
    ----------
    agg
        The run's time aggregation (None: none).
    file_step
        How much time one file covers (``window.step``, parsed).
    """
    if agg is None or not isinstance(file_step, _dt.timedelta):
        return False
    if agg.input_interval == "ending":
        return True
    import pandas as pd  # here: a run without time aggregation (every re-run's plan) skips 0.7 s

    if agg.offset and pd.Timedelta(agg.offset) % pd.Timedelta(file_step) != pd.Timedelta(0):
        return True
    try:
        freq = pd.Timedelta(pd.tseries.frequencies.to_offset(agg.freq))
    except (ValueError, TypeError):  # a calendar frequency (months): windows of many files
        return False
    return freq <= pd.Timedelta(file_step) and pd.Timedelta(file_step) % freq != pd.Timedelta(0)


def following_sources(run: Sequence[Source], file_step: _dt.timedelta,
                      ) -> dict[str, tuple[Source | None, tuple[_dt.datetime, _dt.datetime]]]:
    """Each dated source's key -> (the run's source one ``file_step`` later, its own period).

    The period ``[start, start + step)`` holds the window starts the source's output owns. A
    source outside ``run`` (before the window's start, after its end) is never a neighbour:
    the windows that need it are written missing, as they should be at a run's edge.
    """
    from hpc_workflows.temporal.neighbours import plan_neighbours

    dated = [s for s in run if s.time is not None]
    by_key = {s.key: s for s in dated}
    # plan_neighbours pairs files by their start; keys stand in for the paths here.
    plan = plan_neighbours([(s.time, Path(s.key)) for s in dated], file_step)
    found: dict[str, tuple[Source | None, tuple[_dt.datetime, _dt.datetime]]] = {}
    for source in dated:
        around, period = plan[Path(source.key)]
        later = [by_key[p.name] for p in around if by_key[p.name].time > source.time]
        found[source.key] = (later[0] if later else None, period)
    return found
