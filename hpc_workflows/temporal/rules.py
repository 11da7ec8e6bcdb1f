"""What a time aggregation does, as one validated value: :class:`TimeAggregation`.

Light on purpose (no xarray; pandas only inside :func:`rule_problems`), so the run
configuration can validate a ``time_aggregation`` block when the run is created without
importing the data stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["HOW", "INPUT_INTERVALS", "LABELS", "PARTIAL_SUMS", "TimeAggregation", "rule_problems"]

#: ``how`` -> CF ``cell_methods`` method name.
HOW = {"mean": "mean", "sum": "sum", "min": "minimum", "max": "maximum"}
#: What each input value stands for: a value at its time, or the interval ending / starting there.
INPUT_INTERVALS = ("instant", "ending", "starting")
#: Which end of its window an output step is labelled with.
LABELS = ("start", "end")
#: What an allowed-but-incomplete ``sum`` becomes: scaled to the full window, or left as summed.
PARTIAL_SUMS = ("scale_up", "as_is")


@dataclass(frozen=True)
class TimeAggregation:
    """Resampling rules; see docs/time.md for the conventions and the completeness rule.

    Parameters
    ----------
    freq
        Window length, pandas/xarray style: ``"3h"``, ``"1D"``, ``"1MS"``.
    how
        ``"mean"``, ``"sum"``, ``"min"`` or ``"max"``.
    scale
        Factor applied after reducing (5-minute mm/h rates to mm: ``5/60``).
    units
        New ``units`` of the result (default: unchanged). New units drop the input's
        ``standard_name`` (a rate summed is not a rate) unless ``standard_name`` is given.
    input_step
        The input's regular step (``"5min"``); default: inferred from the file's times.
    input_interval
        ``"instant"`` (default): each value is at its time. ``"ending"``: each value covers the
        ``input_step`` ending at its time (a 24:00 value belongs to the day it ends).
        ``"starting"``: the ``input_step`` starting at its time.
    label
        ``"start"`` (default) or ``"end"`` of each window as its time coordinate.
    offset
        Shift of the windows from midnight, e.g. ``"9h"`` for 09:00-09:00 UTC rain days.
    min_sample_fraction
        Fraction of a window's expected input steps that must be present and valid in a grid
        cell; below it the cell is missing. Default 1.0: every step.
    standard_name
        CF ``standard_name`` of the result, e.g. ``"thickness_of_rainfall_amount"`` for
        rain rates summed into mm.
    partial_sum
        For ``how="sum"`` windows allowed with fewer steps: ``"scale_up"`` (default) multiplies
        by expected/valid steps, ``"as_is"`` keeps the sum of the steps there are.
    """

    freq: str
    how: str = "mean"
    scale: float = 1.0
    units: str | None = None
    input_step: str | None = None
    input_interval: str = "instant"
    label: str = "start"
    offset: str | None = None
    min_sample_fraction: float = 1.0
    partial_sum: str = "scale_up"
    standard_name: str | None = None

    def __post_init__(self) -> None:
        found = rule_problems(asdict(self))
        if found:
            raise ValueError("; ".join(f"time_aggregation.{f}: {m}" for f, m in found))

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for hashing settings and for output attributes)."""
        return asdict(self)


def rule_problems(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem of the given :class:`TimeAggregation` fields as ``(field, fix)``.

    Parameters
    ----------
    fields
        Field name -> value; only the fields given are checked (so that a configuration
        can check each field on its own), and the pair ``input_step``/``freq`` when both are.

    Returns
    -------
    list of (str, str)
        Empty when the rules are valid.
    """
    import math

    import pandas as pd

    found: list[tuple[str, str]] = []
    choices = {"how": tuple(HOW), "input_interval": INPUT_INTERVALS, "label": LABELS,
               "partial_sum": PARTIAL_SUMS}
    for name, valid in choices.items():
        if name in fields and fields[name] not in valid:
            found.append((name, f"{fields[name]!r} is unknown: use one of {', '.join(valid)}"))
    scale = fields.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or not math.isfinite(scale):
        found.append(("scale", f"{scale!r} must be a finite number"))
    fraction = fields.get("min_sample_fraction", 1.0)
    if not 0.0 <= fraction <= 1.0:
        found.append(("min_sample_fraction", f"{fraction} must be between 0 and 1 (1 = every step)"))
    window = None
    if "freq" in fields:
        try:
            window = pd.tseries.frequencies.to_offset(fields["freq"])
        except (ValueError, TypeError):
            found.append(("freq", f"{fields['freq']!r} is not a frequency: use e.g. '3h', '1D', '1MS'"))
    step = None
    for name in ("input_step", "offset"):
        text = fields.get(name)
        if text is None:
            continue
        try:
            value = pd.Timedelta(text)
        except (ValueError, TypeError):
            found.append((name, f"{text!r} is not a duration: use e.g. '5min', '9h'"))
            continue
        if name == "input_step" and value <= pd.Timedelta(0):
            found.append((name, f"{text!r} must be positive"))
        elif name == "input_step":
            step = value
    # Fixed-length windows only: a month holds a whole number of 5-minute steps whatever
    # its length, and is checked per window when the data are read.
    if step is not None and isinstance(window, pd.offsets.Tick):
        if pd.Timedelta(window) % step != pd.Timedelta(0):
            found.append(("input_step", f"{fields['input_step']!r} does not divide freq "
                          f"{fields['freq']!r}: windows must hold a whole number of steps"))
    return found
