"""Atomic writes: whole files or none, with the permissions a plain write would give."""

import os
import stat

import pytest

from benchmark.core.io import atomic_write_bytes, current_umask


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
