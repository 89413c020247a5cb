"""Atomic writes: whole files or none, with the permissions a plain write would give."""

import errno
import os
import shutil
import sqlite3
import stat

import pytest

from benchmark.core import io as io_module
from benchmark.core.errors import BenchmarkError, WriteFailed
from benchmark.core.io import atomic_write_bytes, check_sqlite_file, current_umask


@pytest.fixture
def umask():
    old = current_umask()
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_a_plain_write(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_bytes(tmp_path / "results.json", b"{}")
    (tmp_path / "plain.json").write_bytes(b"{}")
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # not bytes: the write fails half way
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize(("content", "says"), [(b"", "is empty"), (b"not a database at all" * 100, "not a readable")])
def test_a_damaged_sqlite_store_is_named_before_anything_opens_it(tmp_path, content, says):
    path = tmp_path / "mlflow.db"
    path.write_bytes(content)
    with pytest.raises(BenchmarkError) as info:
        check_sqlite_file(path, "the MLflow store", "move it aside")
    assert says in str(info.value) and str(path) in str(info.value) and "move it aside" in str(info.value)
    assert path.read_bytes() == content  # read only: nothing written


def test_a_sound_sqlite_store_passes(tmp_path):
    path = tmp_path / "ok.db"
    with sqlite3.connect(path) as db:
        db.execute("create table t (x)")
    check_sqlite_file(path, "the store", "n/a")
    check_sqlite_file(tmp_path / "absent.db", "the store", "n/a")  # absent: the library creates it


def test_a_full_disk_is_named_with_the_path_and_the_free_space(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_module.os, "replace", full)
    with pytest.raises(WriteFailed) as info:
        atomic_write_bytes(tmp_path / "results.json", b"x" * 2_000_000)
    message = str(info.value)
    assert str(tmp_path / "results.json") in message and "2.0 MB" in message
    assert "No space left on device" in message and "GB free there" in message
    assert isinstance(info.value, OSError) and isinstance(info.value, BenchmarkError)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone


def test_a_store_left_by_a_killed_writer_is_readable(tmp_path):
    """A process killed mid-transaction leaves a hot journal beside a half-written file (what `--resume` finds
    after a SIGKILL); the first reader rolls it back, so the store is sound (a read-only probe failed on it)."""
    live = tmp_path / "live"
    live.mkdir()
    writer = sqlite3.connect(live / "optuna.db", isolation_level=None)
    writer.execute("pragma journal_mode=delete")
    writer.execute("create table trials (x)")
    writer.execute("insert into trials values (1)")
    writer.execute("pragma cache_size=1")  # pages spill into the file before the commit
    writer.execute("begin")
    writer.executemany("insert into trials values (?)", [("x" * 200,) for _ in range(20000)])
    crashed = tmp_path / "crashed"
    shutil.copytree(live, crashed)  # the files as a SIGKILL mid-transaction leaves them
    writer.close()
    assert (crashed / "optuna.db-journal").exists()
    check_sqlite_file(crashed / "optuna.db", "the Optuna studies", "n/a")
    with sqlite3.connect(crashed / "optuna.db") as db:
        assert db.execute("select count(*) from trials").fetchone() == (1,)  # rolled back to the last commit
