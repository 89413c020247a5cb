"""On-disk cache: where it lives, atomic writes, and checksummed embedding matrices.

Embeddings are stored as .npy (never pickle) with a JSON sidecar holding the encoder
identity, the item hash and the file's sha256; a file whose checksum does not match is
recomputed rather than trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

CACHE_ENV = "BENCHMARK_CACHE"
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """BENCHMARK_CACHE, else $XDG_CACHE_HOME/drug-text-benchmark, else ~/.cache/drug-text-benchmark."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "drug-text-benchmark"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_items(items: list[str]) -> str:
    """Order-sensitive hash of a list of strings (what an embedding matrix is aligned to)."""
    digest = hashlib.sha256()
    for item in items:
        encoded = item.encode()
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:16]


class EmbeddingCache:
    """`<root>/embeddings/<encoder key>/<items hash>.npy` with a `.json` sidecar."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir()

    def check_writable(self) -> "EmbeddingCache":
        """Fail now, naming the folder and the fix, when embeddings could not be saved later."""
        from benchmark.errors import BenchmarkError

        probe = self.root / "embeddings" / f".write-test-{os.getpid()}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BenchmarkError(
                f"the embedding cache folder {self.root} cannot be written ({type(exc).__name__}: {exc.strerror or exc}); "
                f"pass --cache-dir with a writable folder or set {CACHE_ENV}"
            ) from None
        return self

    def path(self, encoder_key: str, items_hash: str) -> Path:
        return self.root / "embeddings" / encoder_key / f"{items_hash}.npy"

    def load(self, encoder_key: str, items_hash: str, n_items: int) -> np.ndarray | None:
        path = self.path(encoder_key, items_hash)
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            return None
        try:
            data = path.read_bytes()
            meta = json.loads(meta_path.read_text())
            if sha256_bytes(data) != meta.get("sha256"):
                raise ValueError("checksum mismatch")
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if array.shape[0] != n_items:
                raise ValueError(f"{array.shape[0]} rows, expected {n_items}")
        except Exception as exc:
            log.warning("embedding cache file %s is unusable (%s); recomputing", path, exc)
            return None
        return array

    def save(self, encoder_key: str, items_hash: str, array: np.ndarray, meta: dict) -> Path:
        path = self.path(encoder_key, items_hash)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        data = buffer.getvalue()
        atomic_write_bytes(path, data)
        sidecar = {**meta, "sha256": sha256_bytes(data), "shape": list(array.shape), "dtype": str(array.dtype)}
        atomic_write_bytes(path.with_suffix(".json"), json.dumps(sidecar, indent=2, sort_keys=True).encode())
        return path
