"""Files and folders written whole: permissions, stale temporaries, what --force may replace."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from llmsim.files import (
    MARKER,
    OutputExistsError,
    check_file,
    check_folder,
    remove_stale,
    write_atomic,
    write_folder_atomic,
)


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_folders_and_files_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = write_folder_atomic(tmp_path / "out", lambda t: (t / "a.txt").write_text("x"))
        f = write_atomic(tmp_path / "f.txt", lambda t: t.write_text("y"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert (out / MARKER).is_file()


def test_a_dead_writers_temporaries_go_and_a_live_ones_stay(tmp_path):
    out = tmp_path / "run"
    dead = tmp_path / f".run.{dead_pid()}.0123abcd.tmp"
    dead.mkdir()
    (dead / "requests.parquet").write_bytes(b"PAR1 truncated")
    live = tmp_path / f".run.{os.getpid()}.0123abcd.tmp"
    live.mkdir()
    other = tmp_path / f".run.x.{dead_pid()}.0123abcd.tmp"  # another target's temporary
    other.write_text("")
    assert remove_stale(out) == [dead]
    assert not dead.exists() and live.exists() and other.exists()
    write_folder_atomic(out, lambda t: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, live.name, "run"])


def test_a_folder_set_aside_by_a_killed_replace_comes_back(tmp_path):
    out = tmp_path / "run"
    old = tmp_path / f".run.{dead_pid()}.0123abcd.old"
    old.mkdir()
    (old / "summary.json").write_text("{}")
    remove_stale(out)
    assert (out / "summary.json").read_text() == "{}" and not old.exists()


def test_force_replaces_only_what_llmsim_wrote(tmp_path):
    ours = write_folder_atomic(tmp_path / "ours", lambda t: (t / "x").write_text("1"))
    check_folder(ours, force=True)
    with pytest.raises(OutputExistsError, match="--force"):
        check_folder(ours, force=False)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes").write_text("mine")
    with pytest.raises(OutputExistsError, match="not written by llmsim"):
        check_folder(theirs, force=True)
    (tmp_path / "empty").mkdir()
    check_folder(tmp_path / "empty", force=True)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a folder"):
        check_folder(tmp_path / "file", force=True)
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_folder(tmp_path / "file" / "below", force=False)
    check_file(tmp_path / "file", force=True)
    with pytest.raises(OutputExistsError):
        check_file(tmp_path / "file", force=False)
    with pytest.raises(OutputExistsError, match="is a folder"):
        check_file(tmp_path / "empty", force=True)
    assert (theirs / "notes").read_text() == "mine" and (tmp_path / "file").read_text() == "mine"
    assert not list(tmp_path.glob(".llmsim-probe-*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_folder_one_may_not_write_in_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match="cannot write"):
            check_folder(locked / "out", force=False)
    finally:
        locked.chmod(0o700)
