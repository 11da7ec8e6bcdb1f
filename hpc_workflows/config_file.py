"""Read a run config YAML file: mistakes reported with file, line, column and a one-line hint.

PyYAML's own error is a traceback ending in e.g. ``mapping values are not allowed here``; a
user needs where (file, line, column, the line itself) and what to do. The values are those
Dagster reads from the same file (``dagster job execute -c``): plain ``yaml.safe_load``, YAML 1.1,
so an unquoted ``12:00:00`` is the base-60 number 43200 here too. :func:`locate` finds where a
value was written, so that later checks can point at the line as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigFileError", "RunConfigFile", "load_run_config_file"]

#: PyYAML problem text -> what to do. First match wins; the last is the fallback.
_HINTS: tuple[tuple[str, str], ...] = (
    ("'\\t'", "indent with spaces, not tabs"),
    ("mapping values are not allowed",
     "a value containing ': ' must be quoted (e.g. \"a: b\"), or this key is indented too far"),
    ("could not find expected ':'", "a key needs ': ' after it, or a quote above is not closed"),
    ("did not find expected key", "line this key up with the other keys of its section"),
    ("expected <block end>", "line this key up with the other keys of its section"),
    ("did not find expected '-' indicator", "line this list item up with the other '- ' items"),
    ("found unexpected end of stream", "a quote or bracket is not closed"),
    ("found undefined alias", "'*' starts an alias in YAML: quote the value, e.g. \"*.nc\""),
    ("found character '%'", "quote values that start with '%' or '@'"),
    ("found character '@'", "quote values that start with '%' or '@'"),
    ("", "check the indentation and the quotes on this line and the one above"),
)


class ConfigFileError(ValueError):
    """The file cannot be read as a run config; the message says where and what to do."""


def _hint(problem: str) -> str:
    return next(hint for needle, hint in _HINTS if needle in problem)


def _syntax_error(path: Path, text: str, exc: yaml.MarkedYAMLError) -> ConfigFileError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or str(exc)
    if mark is None:  # not expected from the parser, but never a traceback
        return ConfigFileError(f"{path}: not valid YAML: {problem}; hint: {_hint(problem)}")
    lines = text.splitlines()
    source = lines[mark.line] if mark.line < len(lines) else ""
    context = exc.context_mark
    if exc.context and context is not None and context.line != mark.line:
        # e.g. "while scanning a quoted scalar": where the unclosed quote began
        problem += f" ({exc.context} at line {context.line + 1}, column {context.column + 1})"
    return ConfigFileError(
        f"{path}, line {mark.line + 1}, column {mark.column + 1}: {problem}\n"
        f"    {source}\n    {' ' * mark.column}^\n"
        f"  hint: {_hint(problem)}"
    )


@dataclass(frozen=True)
class RunConfigFile:
    """A run config as read from its file, with where each value was written."""

    path: Path
    data: dict[str, Any]
    _root: yaml.Node

    def locate(self, dotted: str) -> tuple[int, int, str] | None:
        """(line, column, text as written) of the value at ``dotted`` (e.g.
        ``execution.config.cluster.slurm.walltime``), 1-based; ``None`` if not in the file."""
        node = self._root
        for key in dotted.split("."):
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            elif isinstance(node, yaml.SequenceNode) and key.isdigit() and int(key) < len(node.value):
                node = node.value[int(key)]
            else:
                node = None
            if node is None:
                return None
        written = node.value if isinstance(node, yaml.ScalarNode) else ""
        return node.start_mark.line + 1, node.start_mark.column + 1, written

    def where(self, dotted: str) -> str:
        """``"line 12, column 19: 12:00:00"`` for a value of the file, ``""`` if not in it."""
        found = self.locate(dotted)
        if found is None:
            return ""
        line, column, written = found
        return f"line {line}, column {column}" + (f": {written}" if written else "")


def load_run_config_file(path: str | Path) -> RunConfigFile:
    """Read and parse a run config YAML file.

    Parameters
    ----------
    path : str or Path
        The file, as given to ``dagster job execute -c`` or ``hpc-workflows check-config``.

    Returns
    -------
    RunConfigFile
        The parsed mapping and a locator of its values.

    Raises
    ------
    ConfigFileError
        When the file cannot be read, is not YAML (with line, column and a hint) or is not a
        mapping of sections.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(path, text, exc) from None
    except yaml.YAMLError as exc:  # e.g. a byte that is not text
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ConfigFileError(f"{path}: the file is empty: it needs ops: and execution: sections")
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise ConfigFileError(
            f"{path}: the file must be a mapping of sections (ops:, execution:), "
            f"not a {type(data).__name__}"
        )
    return RunConfigFile(path, data, root)
