"""Ray Tune's saved state, made safe to resume from: written atomically, signed as it is written, verified before
anything in it is unpickled.

- **Atomic writes.** Tune copies its experiment state from the driver's staging folder to storage in a
  background thread. On a local (or mounted) storage folder it does so through `AtomicLocalFileSystem`: each file
  is written beside its place and renamed over it only when whole, so a full disk leaves the state saved last
  intact instead of a truncated `experiment_state-*.json` that no resume can read. Object stores (s3://...)
  replace objects whole already.
- **Signed.** `StateSigner` (a Tune callback in the driver) records an HMAC of every state file Tune writes
  (`benchmark.core.signing`), from the staging folder where Tune wrote it, after each save; the signatures sit in
  `benchmark-state.sig` in the experiment folder.
- **Verified.** `verify_experiment` reads every file that `Tuner.restore` and the result grid would deserialise
  (the experiment folder's `*.json` and `*.pkl`, the trials' `*.pkl`) and refuses, in one line naming the file,
  any whose signature is missing or wrong, before Tune reads a byte of it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
from ray.tune import Callback

from benchmark.core.errors import BenchmarkError
from benchmark.core.io import current_umask
from benchmark.core.signing import Manifest, key_path, load_key

log = logging.getLogger(__name__)

SIGNATURES = "benchmark-state.sig"


class AtomicLocalFileSystem(pafs.FileSystemHandler):
    """The local file system, except that a file opened for writing appears under its name only once written whole
    (a temporary file beside it, renamed on a close that followed no failed write)."""

    def __init__(self):
        self.fs = pafs.LocalFileSystem()

    def __eq__(self, other):
        return isinstance(other, AtomicLocalFileSystem)

    def equals(self, other) -> bool:
        return self == other

    def get_type_name(self) -> str:
        return "benchmark-atomic-local"

    def normalize_path(self, path):
        return self.fs.normalize_path(path)

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        with self.fs.open_input_stream(src) as source, self.open_output_stream(dest, None) as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pa.PythonFile(_AtomicFile(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path)


class _AtomicFile:
    """A write-only file that replaces `path` when closed after writes that all succeeded."""

    def __init__(self, path: str):
        self.path = path
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)  # as pyarrow's LocalFileSystem does
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        self.handle = os.fdopen(fd, "wb")
        self.failed = False
        self.closed = False

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except BaseException:
            self.failed = True
            raise

    def flush(self) -> None:
        try:
            self.handle.flush()
        except BaseException:
            self.failed = True
            raise

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.handle.close()  # flushes: ENOSPC may surface only here
            if self.failed:
                raise OSError(f"not all of {self.path} could be written")
            os.chmod(self.tmp, 0o666 & ~current_umask())
            os.replace(self.tmp, self.path)
        except BaseException:
            Path(self.tmp).unlink(missing_ok=True)
            raise

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None:
            self.failed = True
        self.close()

    def __del__(self):  # dropped after a failed write without a close: no half file left behind
        if not self.closed:
            self.handle.close() if not self.handle.closed else None
            Path(self.tmp).unlink(missing_ok=True)

    def tell(self) -> int:
        return self.handle.tell()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False


def storage_filesystem(storage_path: str):
    """The pyarrow file system Tune should write `storage_path` with: atomic writes for a local folder, None (Tune's
    own choice) for a URI."""
    if "://" in storage_path:
        return None
    return pafs.PyFileSystem(AtomicLocalFileSystem())


def _fs_and_path(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), str(Path(path).resolve())


def _read(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as handle:
        return handle.read()


def state_files(fs: pafs.FileSystem, folder: str) -> list[str]:
    """Names (relative to the experiment folder) of the files Tune's restore and result grid deserialise: the
    folder's own `*.json` and `*.pkl`, and the `*.pkl` of its trial folders (`error.pkl`, `params.pkl`)."""
    found = []
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=False)):
        name = info.base_name
        if info.type == pafs.FileType.File and name.endswith((".json", ".pkl")):
            found.append(name)
        elif info.type == pafs.FileType.Directory:
            for inner in fs.get_file_info(pafs.FileSelector(info.path, allow_not_found=True, recursive=False)):
                if inner.type == pafs.FileType.File and inner.base_name.endswith(".pkl"):
                    found.append(f"{name}/{inner.base_name}")
    return sorted(found)


def read_manifest(experiment_path: str, key: bytes | None = None) -> Manifest | None:
    """The experiment's verified signatures, or None when it has none."""
    fs, folder = _fs_and_path(experiment_path)
    where = posixpath.join(folder, SIGNATURES)
    if fs.get_file_info(where).type != pafs.FileType.File:
        return None
    key = key or load_key()
    return Manifest.from_bytes(key, posixpath.basename(folder.rstrip("/")), _read(fs, where), where)


def verify_experiment(experiment_path: str) -> int:
    """Refuse (one line naming the file and what to do) any state file of the experiment whose signature is missing
    or wrong; returns how many files verified. Nothing is deserialised here."""
    fs, folder = _fs_and_path(experiment_path)
    names = state_files(fs, folder)
    if not names:
        return 0
    advice = (
        "nothing in it was read: if you did not change it, start the run again without --resume (or with another "
        "--output); what MLflow and the Optuna studies hold stays"
    )
    manifest = read_manifest(experiment_path)
    if manifest is None:
        raise BenchmarkError(
            f"Ray Tune's state in {folder} carries no signatures ({SIGNATURES}): it was not saved by this suite for "
            f"this user, so it is not trusted; {advice}"
        )
    for name in names:
        if not manifest.accepts(name, _read(fs, posixpath.join(folder, name))):
            raise BenchmarkError(
                f"Ray Tune's state file {posixpath.join(folder, name)} does not match its signature (changed, cut "
                f"short or replaced after the run saved it, or signed with another key than {key_path()}); {advice}"
            )
    return len(names)


def verify_storage(storage_path: str) -> int:
    """`verify_experiment` for every experiment folder in Ray Tune's storage (a resumed run, before it starts
    anything); returns how many files verified."""
    fs, folder = _fs_and_path(storage_path)
    selector = pafs.FileSelector(folder, allow_not_found=True, recursive=False)
    experiments = [i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.Directory]
    prefix = storage_path.split("://")[0] + "://" if "://" in storage_path else ""
    return sum(verify_experiment(prefix + path if prefix else path) for path in experiments)


class StateSigner(Callback):
    """Driver-side: after each of Tune's saves, the HMAC of every state file it wrote (read from its staging
    folder, where Tune writes before it copies to storage) joins the experiment's signatures.

    Signing the staging copy, not storage, means that a signature exists before its file reaches storage, and a
    file someone changed in storage is never signed. The key is never pickled with the callback."""

    def __init__(self, experiment_path: str):
        self.experiment_path = experiment_path
        self.staging: str | None = None
        self._manifest: Manifest | None = None
        self._seen: dict[str, tuple[int, int]] = {}

    def __getstate__(self):
        return {"experiment_path": self.experiment_path, "staging": None, "_manifest": None, "_seen": {}}

    def _load(self) -> Manifest:
        if self._manifest is None:
            key = load_key()
            fs, folder = _fs_and_path(self.experiment_path)
            try:  # a resumed study adds to its verified signatures
                found = read_manifest(self.experiment_path, key)
            except BenchmarkError:  # a new study over an old folder whose signatures do not verify: start afresh
                log.info("the signatures in %s do not verify; this study signs its own state afresh", folder)
                found = None
            self._manifest = found or Manifest(key, posixpath.basename(folder.rstrip("/")))
        return self._manifest

    def sign_storage_file(self, name: str) -> None:
        """Sign a file Tune writes straight to storage (`tuner.pkl`, written when the Tuner is made)."""
        fs, folder = _fs_and_path(self.experiment_path)
        path = posixpath.join(folder, name)
        if fs.get_file_info(path).type == pafs.FileType.File and self._load().add(name, _read(fs, path)):
            self._write()

    def sign(self) -> None:
        """Sign what changed in the staging folder since the last call."""
        if self.staging is None or not os.path.isdir(self.staging):
            return
        manifest, changed = self._load(), False
        local = pafs.LocalFileSystem()
        for name in state_files(local, self.staging):
            path = os.path.join(self.staging, name)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue
            if self._seen.get(name) == (info.st_mtime_ns, info.st_size):
                continue
            self._seen[name] = (info.st_mtime_ns, info.st_size)
            changed |= manifest.add(name, Path(path).read_bytes())
        if changed:
            self._write()

    def _write(self) -> None:
        fs, folder = _fs_and_path(self.experiment_path)
        target = posixpath.join(folder, SIGNATURES)
        fs.create_dir(folder, recursive=True)
        data = self._manifest.to_bytes()
        if isinstance(fs, pafs.LocalFileSystem):
            with _AtomicFile(target) as handle:
                handle.write(data)
        else:
            with fs.open_output_stream(target) as handle:
                handle.write(data)

    def _from_trials(self, trials) -> None:
        if self.staging is None and trials:
            self.staging = trials[0].storage.experiment_driver_staging_path

    def sign_or_say(self) -> bool:
        """`sign`, with a failure (a full disk) logged, not raised: a run watching this logger stops on it, and
        Tune's loop is not broken mid-step. True when signed."""
        try:
            self.sign()
            return True
        except OSError as exc:
            log.error("could not save the state signatures to %s: %s", self.experiment_path, exc)
            return False

    def on_step_end(self, iteration, trials, **info):
        self._from_trials(trials)
        self.sign_or_say()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._from_trials(trials)
        self.sign_or_say()

    def on_experiment_end(self, trials, **info):
        self._from_trials(trials)
        self.sign_or_say()
