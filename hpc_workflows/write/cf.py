"""CF metadata of a regridded output, worked out from the source's (plain Python, no xarray).

Both writers (:func:`hpc_workflows.regrid.regrid` + :func:`write_netcdf_atomic`, and the
streaming :func:`hpc_workflows.regrid.regrid_file`) use these rules, so their files carry the
same metadata:

- ``coordinates``, ``cell_measures`` and ``ancillary_variables`` keep the names the output
  still has (scalar and auxiliary coordinates such as ``height``, ``forecast_period``,
  ``forecast_reference_time``, and regridded horizontal fields such as
  ``surface_altitude``), and drop the ones that described the source grid (``nav_lat``) or
  were not carried over: iris and the CF checkers then find every coordinate again.
- ``formula_terms`` is kept only when every variable it names is in the output (the
  horizontal ones are regridded with the data); otherwise it is removed, so no reader is
  sent to a variable that is not there.
- ``cell_methods`` names the output's dimensions: a source horizontal dimension becomes
  ``lat``/``lon`` (``y: x: mean`` becomes ``area: mean``), and a method over a name the
  output does not have (e.g. a scalar coordinate that was not carried over) is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

__all__ = ["BAND_ATTRS", "band_attrs", "cell_methods_for_output", "filter_references",
           "formula_terms_names"]

#: Attributes naming other variables, each a list of names (``coordinates``) or of
#: ``key: name`` pairs (``cell_measures``, ``formula_terms``).
_REFERENCE_ATTRS = ("coordinates", "ancillary_variables", "cell_measures")

BAND_ATTRS = {
    "band_lower": "lower limit of the value band (inclusive)",
    "band_upper": "upper limit of the value band (exclusive)",
}


def band_attrs(name: str, units: str | None) -> dict[str, str]:
    """Attributes of ``band_lower``/``band_upper``: a long_name, and the units of the data the
    bands classify (``"1"`` when the data have none)."""
    return {"long_name": BAND_ATTRS[name], "units": units or "1"}


def _pairs(text: str) -> list[tuple[str, str]]:
    """``key: name`` pairs of e.g. ``"area: areacella"`` or ``"a: ap b: b ps: ps"``."""
    tokens = str(text).split()
    return [(tokens[i].rstrip(":"), tokens[i + 1]) for i in range(0, len(tokens) - 1, 2)
            if tokens[i].endswith(":")]


def formula_terms_names(text: str) -> list[str]:
    """Variable names a ``formula_terms`` attribute refers to."""
    return [name for _, name in _pairs(text)]


def filter_references(attrs: Mapping[str, object], present: Collection[str]) -> dict:
    """``attrs`` with ``coordinates``, ``ancillary_variables``, ``cell_measures`` reduced to
    the variables in ``present`` (attribute removed when nothing is left) and
    ``formula_terms`` removed unless every variable it names is present."""
    out = dict(attrs)
    for key in _REFERENCE_ATTRS:
        if key not in out:
            continue
        if key == "cell_measures":
            kept = [f"{k}: {v}" for k, v in _pairs(str(out[key])) if v in present]
        else:
            kept = [n for n in str(out[key]).split() if n in present]
        if kept:
            out[key] = " ".join(kept)
        else:
            del out[key]
    if "formula_terms" in out and not all(
            n in present for n in formula_terms_names(str(out["formula_terms"]))):
        del out["formula_terms"]
    return out


def _entries(text: str) -> list[tuple[list[str], str]]:
    """(names, method) pairs of a cell_methods string; a parenthesised comment, which may
    hold ``interval:`` and ``comment:``, stays part of its method."""
    entries: list[tuple[list[str], list[str]]] = []
    previous_was_name = False
    for token in re.findall(r"\([^)]*\)|\S+", str(text)):
        is_name = token.endswith(":") and not token.startswith("(")
        if is_name and not previous_was_name:
            entries.append(([], []))
        if not entries:  # text before the first name: not CF, keep it with no names
            entries.append(([], []))
        entries[-1][0 if is_name else 1].append(token.rstrip(":") if is_name else token)
        previous_was_name = is_name
    return [(names, " ".join(method)) for names, method in entries]


def cell_methods_for_output(text: str, rename: Mapping[str, str],
                            valid: Collection[str]) -> str:
    """``cell_methods`` with names renamed and entries over names not in ``valid`` dropped.

    Parameters
    ----------
    text
        The source's ``cell_methods`` (``"time: mean area: mean"``).
    rename
        Source names to output names (source horizontal dimensions and their coordinate
        names to ``lat``/``lon``). When an entry's names become exactly ``lat`` and ``lon``
        it is written ``area:``, the CF name for the horizontal.
    valid
        Names a method may be over in the output: the variable's dimensions and scalar
        coordinates (``area`` is always valid).
    """
    entries = []
    for names, method in _entries(text):
        names = [rename.get(n, n) for n in names]
        names = list(dict.fromkeys(names))  # "y: x:" both renamed -> keep each once
        if set(names) == {"lat", "lon"}:
            names = ["area"]
        if not names or not all(n == "area" or n in valid for n in names):
            continue
        entries.append(" ".join(f"{n}:" for n in names) + f" {method}")
    return " ".join(entries)
