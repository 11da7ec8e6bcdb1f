"""Private folders and files: mode 0700/0600, tightened if loose, refused if not ours."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys

import pytest

from hpc_workflows.ui.private import UnsafePathError, private_dir, write_private_file


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_folders_and_files_are_private(tmp_path):
    old = os.umask(0o022)  # a typical umask: files would otherwise be world-readable
    try:
        f = write_private_file(tmp_path / "a" / "b" / "session.url", "secret\n")
    finally:
        os.umask(old)
    assert f.read_text() == "secret\n"
    assert mode(f) == 0o600 and mode(f.parent) == 0o700 and mode(f.parent.parent) == 0o700
    assert [p.name for p in f.parent.iterdir()] == ["session.url"]  # no leftover part file


def test_loose_folder_of_ours_is_tightened(tmp_path):
    folder = tmp_path / "ui"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    private_dir(folder)
    assert mode(folder) == 0o700


def test_folder_of_another_user_or_a_symlink_is_refused(tmp_path, other_user):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, pwd.getpwnam(other_user).pw_uid, -1)
    with pytest.raises(UnsafePathError, match="belongs to uid"):
        private_dir(theirs)
    link = tmp_path / "link"
    link.symlink_to(theirs)
    with pytest.raises(UnsafePathError, match="not a plain folder"):
        private_dir(link)


def test_ui_refuses_a_state_folder_it_does_not_own(tmp_path, other_user):
    theirs = tmp_path / "state"
    theirs.mkdir()
    os.chown(theirs, pwd.getpwnam(other_user).pw_uid, -1)
    out = subprocess.run([sys.executable, "-m", "hpc_workflows.cli", "ui", "--state-dir", str(theirs)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and str(theirs) in out.stderr and "Traceback" not in out.stderr
