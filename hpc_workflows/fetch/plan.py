"""Planning: turn a date window + template, or a manifest file, into a list of `Source`."""

from __future__ import annotations

import csv
import json
import re
import string
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from hpc_workflows.fetch.source import Source, expand_iris_sample_data, filename_for

if TYPE_CHECKING:  # imported where used: 0.6 s that every definitions load would pay
    import pandas as pd

_TEMPLATE_FIELDS = ("dt", "iris_sample_data")
# pandas' "MS"/"YS" are case-sensitive: "100ms" is 100 milliseconds, not 100 months.
_MONTH_RE = re.compile(r"^\s*(\d*)\s*((?i:months?|mon)|MS)\s*$")
_YEAR_RE = re.compile(r"^\s*(\d*)\s*((?i:years?)|YS)\s*$")

# The fixed steps people write ("24h", "1D", "30min", "1 day 6 hours"), parsed without pandas:
# importing it costs ~0.7 s in every process that plans (each re-run, each worker). Units are
# pandas' own spellings (plus its deprecated "H", "d", "S", "w", which it still accepts), so a
# step means the same either way; whatever this does not cover (fractions, "1 days 02:00:00",
# ISO "P1D") falls through to pd.Timedelta. "M" is not here: pandas refuses it as ambiguous.
_FIXED_UNITS = {
    **dict.fromkeys(("W", "w"), "weeks"),
    **dict.fromkeys(("D", "d", "day", "days"), "days"),
    **dict.fromkeys(("h", "H", "hr", "hour", "hours"), "hours"),
    **dict.fromkeys(("m", "min", "minute", "minutes"), "minutes"),
    **dict.fromkeys(("s", "S", "sec", "second", "seconds"), "seconds"),
}
_UNIT_ALTERNATION = "|".join(sorted(_FIXED_UNITS, key=len, reverse=True))  # longest first
_FIXED_TERM_RE = re.compile(rf"(\d+)\s*({_UNIT_ALTERNATION})(?![A-Za-z])")
_FIXED_STEP_RE = re.compile(rf"\s*\+?(?:\d+\s*(?:{_UNIT_ALTERNATION})(?![A-Za-z])\s*,?\s*)+")


def _fixed_step(step: str) -> timedelta | None:
    """``step`` as a timedelta if it is whole numbers of weeks/days/hours/minutes/seconds."""
    if not _FIXED_STEP_RE.fullmatch(step):
        return None
    parts: dict[str, int] = {}
    for number, unit in _FIXED_TERM_RE.findall(step):
        name = _FIXED_UNITS[unit]
        parts[name] = parts.get(name, 0) + int(number)
    return timedelta(**parts)


def parse_step(step: str | timedelta) -> timedelta | pd.DateOffset:
    """Parse a planning step such as ``"24h"``, ``"1D"``, ``"30min"``, ``"1MS"``, ``"1 month"``.

    Whole weeks, days, hours, minutes and seconds (``"6h"``, ``"1 day 6 hours"``) are parsed
    here; other fixed durations by ``pandas.Timedelta``; months and years become a
    ``pandas.DateOffset``. pandas is imported only for those last two.

    Returns
    -------
    timedelta or pandas.DateOffset
        Fixed steps as timedelta; calendar months/years as a DateOffset.

    Raises
    ------
    ValueError
        If the step is not understood or not positive.
    """
    if isinstance(step, timedelta):
        if step <= timedelta(0):
            raise ValueError(f"step {step!r} must be positive [field: step]")
        return step
    if not isinstance(step, str) or not step.strip():
        raise ValueError(f"step {step!r} must be a string like '24h', '1D' or '1 month' [field: step]")
    fixed = _fixed_step(step)
    if fixed is not None:
        if fixed <= timedelta(0):
            raise ValueError(f"step {step!r} must be positive [field: step]")
        return fixed
    import pandas as pd

    for regex, unit in ((_MONTH_RE, "months"), (_YEAR_RE, "years")):
        match = regex.match(step)
        if match:
            n = int(match.group(1) or 1)
            if n <= 0:
                break
            return pd.DateOffset(**{unit: n})
    try:
        delta = pd.Timedelta(step.strip())
    except (ValueError, TypeError):
        raise ValueError(
            f"step {step!r} is not understood [field: step]; use e.g. '24h', '6h', '1D', '30min', "
            "'1MS' or '1 month'"
        ) from None
    if delta <= pd.Timedelta(0):
        raise ValueError(f"step {step!r} must be positive [field: step]")
    return delta.to_pytimedelta()


def check_template(template: str) -> None:
    """Validate a ``{dt:%Y%m%d}``-style template; raise ValueError naming ``template``."""
    if not isinstance(template, str) or not template.strip():
        raise ValueError(f"template {template!r} must be a non-empty string [field: template]")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"template {template!r} is malformed ({exc}) [field: template]; write a date as "
            "{dt:%Y%m%d} and literal braces as '{{' '}}'"
        ) from None
    names = {name for _, name, _, _ in parsed if name is not None}
    unknown = names - set(_TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(
            f"template {template!r} uses unknown field(s) {sorted(unknown)} [field: template]; "
            "valid fields are {dt:<strftime format>} and {iris_sample_data}"
        )
    if "dt" not in names:
        raise ValueError(
            f"template {template!r} has no {{dt}} field [field: template], so every date would "
            "map to the same file; add e.g. {dt:%Y%m%d}"
        )


def key_format(times: list[datetime]) -> str:
    """Choose one strftime format for the keys of a plan: as short as the dates allow."""
    if all(t.second == 0 and t.microsecond == 0 for t in times):
        if all(t.hour == 0 and t.minute == 0 for t in times):
            return "%Y%m%d"
        if all(t.minute == 0 for t in times):
            return "%Y%m%dT%H"
        return "%Y%m%dT%H%M"
    return "%Y%m%dT%H%M%S"


def plan_sources(start: datetime, end: datetime, step: str | timedelta, template: str) -> list[Source]:
    """List the sources for a date window, one per step from ``start`` to ``end`` inclusive.

    Parameters
    ----------
    start, end : datetime
        Window bounds (inclusive).  Strings in ISO format are accepted too.
    step : str or timedelta
        ``"24h"``, ``"1D"``, ``"6h"``, ``"1MS"``/``"1 month"``...
    template : str
        URL or path with a ``{dt:<strftime>}`` field, e.g.
        ``"https://h/radar/{dt:%Y%m%d}.tar"``; ``{iris_sample_data}`` is expanded.

    Returns
    -------
    list of Source
        With keys such as ``"20200214"`` (or ``"20200214T18"`` when the hours differ from 00).

    Raises
    ------
    ValueError
        Naming the field at fault (``start``, ``end``, ``step``, ``template``).
    """
    start = _as_datetime(start, "start")
    end = _as_datetime(end, "end")
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()} [field: end]")
    offset = parse_step(step)
    check_template(template)
    times: list[datetime] = []
    current = start
    while current <= end:
        times.append(current)
        nxt = current + offset
        current = nxt.to_pydatetime() if hasattr(nxt, "to_pydatetime") else nxt
        if len(times) > 1_000_000:
            raise ValueError("the window has more than a million steps [field: step]")
    fmt = key_format(times)
    sources = []
    for t in times:
        try:
            url = template.format(dt=t, iris_sample_data="{iris_sample_data}")
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"template {template!r} could not be filled for {t} ({exc}) [field: template]") from None
        sources.append(Source(key=t.strftime(fmt), url=expand_iris_sample_data(url), time=t))
    urls = [s.url for s in sources]
    if len(set(urls)) != len(urls):
        raise ValueError(
            f"template {template!r} gives the same url for several dates [field: template]; "
            "its {dt:...} format is coarser than the step"
        )
    return sources


def _as_datetime(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
    raise ValueError(f"{field} {value!r} is not a datetime or ISO date string like '2020-02-14T18:00' [field: {field}]")


def read_manifest(path: str | Path) -> list[Source]:
    """Read sources from a CSV, JSON or YAML manifest.

    Each entry has ``url`` and optional ``checksum`` (``sha256:<hex>``/``md5:<hex>``),
    ``size`` (bytes), ``time`` (ISO date) and ``key``.  Without a key, the key is derived from
    the time, or else from the file name.  JSON/YAML may be a list or ``{"sources": [...]}``.
    CSV needs a header row.  ``{iris_sample_data}`` in urls is expanded; relative paths are
    taken relative to the manifest's folder.

    Raises
    ------
    ValueError
        Naming the manifest, the entry number and the field at fault.
    """
    path = Path(expand_iris_sample_data(str(path)))
    if not path.is_file():
        raise ValueError(f"manifest {path} does not exist or is not a file [field: manifest]")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".csv":
        rows: Any = list(csv.DictReader(text.splitlines()))
        if rows and "url" not in rows[0]:
            raise ValueError(f"manifest {path}: the CSV header must include a 'url' column [field: url]")
    elif suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"manifest {path} is not valid JSON: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            rows = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"manifest {path} is not valid YAML: {exc}") from None
    else:
        raise ValueError(f"manifest {path}: unknown format {suffix!r}; use .csv, .json, .yaml or .yml")
    if isinstance(rows, dict) and "sources" in rows:
        rows = rows["sources"]
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"manifest {path} must contain a non-empty list of entries with a 'url'")
    return _sources_from_rows(rows, path)


def _sources_from_rows(rows: Iterable[Any], path: Path) -> list[Source]:
    entries = []
    for number, row in enumerate(rows, start=1):
        where = f"manifest {path} entry {number}"
        if isinstance(row, str):
            row = {"url": row}
        if not isinstance(row, dict):
            raise ValueError(f"{where} must be a mapping with a 'url' [field: url]")
        row = {str(k).strip(): v for k, v in row.items() if v not in (None, "")}
        unknown = set(row) - {"url", "checksum", "size", "time", "key"}
        if unknown:
            raise ValueError(f"{where} has unknown field(s) {sorted(unknown)}; valid: url, checksum, size, time, key")
        url = row.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ValueError(f"{where} has no url [field: url]")
        url = expand_iris_sample_data(url.strip())
        if "://" not in url and ":" not in url.split("/")[0] and not Path(url).is_absolute():
            url = str((path.parent / url).resolve())
        time = row.get("time")
        if time is not None and not isinstance(time, datetime):
            try:
                time = datetime.fromisoformat(str(time).strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"{where} [field: time]: {time!r} is not an ISO date like 2020-02-14T18:00") from None
        size = row.get("size")
        if size is not None:
            try:
                size = int(size)
            except (TypeError, ValueError):
                raise ValueError(f"{where} [field: size]: {size!r} is not an integer number of bytes") from None
        entries.append((row.get("key"), url, time, row.get("checksum"), size, where))

    times = [e[2] for e in entries if e[2] is not None]
    fmt = key_format(times) if times and len(times) == len(entries) else None
    sources = []
    for key, url, time, checksum, size, where in entries:
        if key is None:
            if fmt is not None:
                key = time.strftime(fmt)
            else:
                key = re.sub(r"[^A-Za-z0-9_]", "_", filename_for(url, "source").split(".")[0]) or "source"
        try:
            sources.append(Source(key=str(key), url=url, time=time, checksum=checksum, size=size))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    keys = [s.key for s in sources]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(
            f"manifest {path}: duplicate keys {duplicates} [field: key]; give each entry a distinct "
            "'key' or 'time'"
        )
    return sources
