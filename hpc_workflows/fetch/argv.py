"""Archive-client argument lists: filling a template, and keeping values from becoming options.

The command runs without a shell and placeholders are substituted inside each argument, so a
file name stays one argument whatever it contains.  What remains is a value that starts with
``-``: the client would read it as an option (``moo get -f -oX... dest``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Sequence

from hpc_workflows.fetch.source import Source

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "busybox"})
#: argv entry after which POSIX clients stop reading options.
END_OF_OPTIONS = "--"


def build_argv(template: list[str], *, src: str, dest: str, key: str = "", name: str = "") -> list[str]:
    """Substitute ``{src}``, ``{dest}``, ``{key}``, ``{name}`` inside each template argument.

    Values are inserted verbatim (never re-parsed), one argv entry per template entry.
    """
    values = {"src": src, "dest": dest, "key": key, "name": name}
    return [arg.format_map(values) for arg in template]


def option_like_argument(template: Sequence[str], argv: Sequence[str]) -> int | None:
    """Index of the first argument an archive client would read as an option by accident.

    That is an argument that starts with ``-`` only because a substituted value did (the
    template's own text does not), before any ``--`` end-of-options marker.  None if safe.
    """
    for index, (text, value) in enumerate(zip(template, argv)):
        if index == 0:
            continue
        if text == END_OF_OPTIONS:
            return None
        if value.startswith("-") and not text.startswith("-"):
            return index
    return None


def shell_warning(template: Sequence[str]) -> str | None:
    """A warning when the command's program is a shell given a script (``sh -c``, ``bash -lc``)."""
    if not template:
        return None
    program = PurePosixPath(template[0]).name
    if program in _SHELLS and any(re.fullmatch(r"-[a-z]*c[a-z]*", a) for a in template[1:]):
        return (
            f"source.command runs a shell ({program} -c): file names are then parsed by the shell, "
            "so a hostile name can run commands and the shell-free guarantee no longer holds; call "
            "the archive client directly, e.g. ['moo', 'get', '-f', '{src}', '{dest}']"
        )
    return None





def check_command_arguments(template: Sequence[str], argv: Sequence[str], source: Source) -> None:
    """Refuse ``argv`` (built from ``template`` for ``source``) when a value would be an option.

    Raises
    ------
    ValueError
        Naming the source, the argument and the two fixes.
    """
    index = option_like_argument(template, argv)
    if index is None:
        return
    raise ValueError(
        f"source {source.key!r} ({source.url}): argument {argv[index]!r} (from {template[index]!r} in "
        f"source.command) starts with '-', so {PurePosixPath(template[0]).name} would read it as an "
        "option; rename the file/path, or put '--' before it in source.command if the client accepts "
        "'--' as end of options"
    )


def single_file_form(batch_command: Sequence[str]) -> list[str]:
    """A batch template (``{src}`` repeated per file, ``{dest_dir}``) as seen by one file."""
    return [("{dest}" if arg == "{dest_dir}" else arg) for arg in batch_command]
