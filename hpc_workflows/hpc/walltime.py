"""Walltime strings of batch systems and the worker lifetime derived from them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CLOCK = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def parse_walltime(text: str) -> int:
    """Seconds in a walltime written as SLURM or PBS accept it.

    Parameters
    ----------
    text : str
        ``"HH:MM:SS"``, ``"MM:SS"``, ``"D-HH:MM:SS"``, ``"D-HH"`` or plain minutes ``"30"``
        (SLURM's reading of a bare number).

    Returns
    -------
    int
        Seconds.

    Raises
    ------
    ValueError
        When the text is not a walltime; the message shows the accepted forms.
    """
    match = _CLOCK.match(str(text).strip())
    if not match:
        raise ValueError(
            f"walltime {text!r} is not a walltime: use 'HH:MM:SS' (e.g. '01:30:00'), "
            "'MM:SS', 'D-HH:MM:SS' or minutes ('30')"
        )
    days = int(match["days"] or 0)
    parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
    if match["days"] is not None:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        h, m, s = parts
    elif len(parts) == 3:
        h, m, s = parts
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = 0, parts[0], 0
    return ((days * 24 + h) * 60 + m) * 60 + s


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _as_yaml_sexagesimal(seconds: int) -> str:
    """The unquoted text YAML 1.1 reads as ``seconds`` (``12:00:00`` -> 43200, ``30:00`` -> 1800)."""
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def walltime_number_problem(name: str, value: float) -> str:
    """Why a walltime given as a number is refused, and the text to write instead.

    YAML 1.1 (PyYAML, and so Dagster's ``-c`` loader) reads an unquoted ``12:00:00`` as the
    base-60 integer 43200; by the time a validator sees it, the text is gone. Any whole number
    from 60 up may have been written that way, so the hint shows which text gives that number
    and the quoted ``HH:MM:SS`` of the same duration.

    Parameters
    ----------
    name : str
        The field, e.g. ``walltime``.
    value : int or float
        What YAML produced.

    Returns
    -------
    str
        One sentence for the error message.
    """
    seconds = int(value) if float(value).is_integer() and value >= 60 else None
    if seconds is None:
        return (f"{name} is the number {value:g}, not a walltime: write it as a quoted "
                f"'HH:MM:SS', e.g. {name}: \"01:00:00\"")
    return (
        f"{name} is the number {seconds}, not a walltime (YAML reads an unquoted "
        f"{_as_yaml_sexagesimal(seconds)} as {seconds} seconds): write it as a quoted 'HH:MM:SS', "
        f"e.g. {name}: \"{_hms(seconds)}\""
    )


def walltime_warning(name: str, text: str) -> str | None:
    """A warning for a walltime that is valid but probably not what was meant.

    ``"2:00"`` is 2 minutes to SLURM and PBS (``MM:SS``), not 2 hours: a short ``M:00`` that
    could be read as hours gets a warning (write ``"00:02:00"`` to mean minutes and silence it).

    Returns
    -------
    str or None
        The warning, or ``None`` when there is nothing to say.
    """
    match = re.fullmatch(r"\s*(\d+):00\s*", str(text))
    if not match or int(match[1]) > 24:
        return None
    n = int(match[1])
    return (f"{name} {text!r} is {n} minute{'s' * (n != 1)} to SLURM and PBS (MM:SS); "
            f"if you meant {n} hour{'s' * (n != 1)} write '{n:02d}:00:00'")


@dataclass(frozen=True)
class WorkerLifetime:
    """When a worker should retire before its batch job hits the walltime."""

    lifetime: int
    """Seconds after start at which the worker retires gracefully."""
    stagger: int
    """Random +/- spread so that workers started together do not all retire at once."""



def lifetime_for(walltime_seconds: int, margin_seconds: int | None = None) -> WorkerLifetime:
    """Worker lifetime that ends safely inside a job's walltime.

    The default margin is 10 % of the walltime, at least 60 s and at most 10 min: enough for a
    running step to finish its current task being handed over (graceful retirement moves data
    off the worker) before the batch system kills the job.

    Parameters
    ----------
    walltime_seconds : int
        The job's walltime.
    margin_seconds : int, optional
        Override of the margin kept before the walltime.

    Returns
    -------
    WorkerLifetime
    """
    if margin_seconds is None:
        margin_seconds = min(600, max(60, walltime_seconds // 10))
    if margin_seconds >= walltime_seconds:
        raise ValueError(
            f"lifetime_margin ({margin_seconds} s) must be shorter than the walltime "
            f"({walltime_seconds} s): workers would retire before they start"
        )
    # The stagger spreads retirements in both directions; keep the latest one inside the margin.
    stagger = min(margin_seconds // 2, max(1, (walltime_seconds - margin_seconds) // 10))
    return WorkerLifetime(lifetime=walltime_seconds - margin_seconds, stagger=stagger)
