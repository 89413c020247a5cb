"""Ray Tune's saved state: signed from where Tune writes it, verified before it is read, written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from benchmark.core.errors import BenchmarkError
from benchmark.core.signing import KEY_ENV, load_key
from benchmark.tuning.state import SIGNATURES, StateSigner, storage_filesystem, verify_experiment, verify_storage


def saved_experiment(tmp_path: Path) -> tuple[Path, Path, StateSigner]:
    """An experiment as Tune leaves it: state files written in a staging folder, copied to storage, signed."""
    staging, storage = tmp_path / "staging", tmp_path / "storage" / "study"
    files = {
        "experiment_state-2026.json": b'{"trial_data": []}',
        "searcher-state-2026.pkl": b"\x80\x04searcher",
        "trial_1/error.pkl": b"\x80\x04error",
        "trial_1/result.json": b'{"loss": 1}\n',  # appended as trials report: not deserialised on restore, not signed
    }
    for name, data in files.items():
        for root in (staging, storage):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
    (storage / "tuner.pkl").write_bytes(b"\x80\x04tuner")
    signer = StateSigner(str(storage))
    signer.staging = str(staging)
    signer.sign()
    signer.sign_storage_file("tuner.pkl")
    return staging, storage, signer


def test_signed_state_verifies_and_any_change_to_a_file_that_is_read_is_refused(tmp_path):
    staging, storage, signer = saved_experiment(tmp_path)
    assert verify_experiment(str(storage)) == 4  # tuner.pkl, experiment state, searcher state, the trial's error
    (storage / "trial_1" / "result.json").write_text("anything")  # not read as a pickle: not checked
    assert verify_storage(str(storage.parent)) == 4
    for name in ("tuner.pkl", "trial_1/error.pkl", "experiment_state-2026.json"):
        path = storage / name
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 2])  # cut short
        with pytest.raises(BenchmarkError, match=f"{name} does not match its signature"):
            verify_experiment(str(storage))
        path.write_bytes(good)
    (storage / "callback-states-evil.pkl").write_bytes(b"new")  # a file the run never wrote
    with pytest.raises(BenchmarkError, match="callback-states-evil.pkl does not match"):
        verify_experiment(str(storage))


def test_a_new_save_is_signed_and_older_versions_stay_valid_while_tune_copies(tmp_path):
    staging, storage, signer = saved_experiment(tmp_path)
    state = staging / "experiment_state-2026.json"
    state.write_bytes(b'{"trial_data": [1]}')
    os.utime(state, ns=(1, 1))  # a new mtime: the signer reads it again
    signer.sign()
    verify_experiment(str(storage))  # storage still holds the previous save (Tune's copy runs in the background)
    (storage / state.name).write_bytes(state.read_bytes())
    verify_experiment(str(storage))  # and the new one once copied


def test_state_without_signatures_or_with_forged_ones_is_refused(tmp_path):
    staging, storage, signer = saved_experiment(tmp_path)
    manifest = storage / SIGNATURES
    forged = manifest.read_text().replace('"mac": "', '"mac": "0')
    manifest.write_text(forged)
    with pytest.raises(BenchmarkError, match="signatures .* are damaged or were not made with this user's key"):
        verify_experiment(str(storage))
    manifest.unlink()
    with pytest.raises(BenchmarkError, match="carries no signatures"):
        verify_experiment(str(storage))


def test_another_users_key_does_not_verify_and_the_key_is_never_written_beside_the_state(tmp_path, monkeypatch):
    staging, storage, signer = saved_experiment(tmp_path)
    key = load_key()
    assert key.hex() not in (storage / SIGNATURES).read_text()
    assert key.hex().encode() not in pickle.dumps(signer)  # Tune pickles callbacks into tuner.pkl
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "other" / "state.key"))
    with pytest.raises(BenchmarkError, match="not made with this user's key"):
        verify_experiment(str(storage))


def test_a_key_others_can_read_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "k" / "state.key"))
    load_key()
    assert (tmp_path / "k" / "state.key").stat().st_mode & 0o777 == 0o600
    os.chmod(tmp_path / "k" / "state.key", 0o644)
    with pytest.raises(BenchmarkError, match="may be read or changed by other users .*chmod 600"):
        load_key()


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str = "64k"):
    """A tmpfs of `size` (root only)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]).returncode
    ):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_copy_to_a_full_disk_leaves_the_state_saved_last_whole(tmp_path):
    source = tmp_path / "staging"
    source.mkdir()
    with small_disk(tmp_path) as disk:
        fs = storage_filesystem(str(disk))
        (source / "experiment_state-1.json").write_text('{"trial_data": ["saved last"]}')
        pafs.copy_files(str(source), str(disk / "study"), destination_filesystem=fs)
        (source / "experiment_state-1.json").write_text('{"trial_data": ["%s"]}' % ("x" * 200_000))
        with pytest.raises(OSError, match="No space left"):
            pafs.copy_files(str(source), str(disk / "study"), destination_filesystem=fs)
        assert (disk / "study" / "experiment_state-1.json").read_text() == '{"trial_data": ["saved last"]}'
        assert os.listdir(disk / "study") == ["experiment_state-1.json"]  # no half-written temporary left
    assert storage_filesystem("s3://bucket/path") is None  # object stores replace objects whole already
