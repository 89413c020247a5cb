"""On-disk cache: where it lives, atomic writes, and checksummed embedding matrices.

Embeddings are stored as .npy (never pickle) with a JSON sidecar holding the encoder
identity, the item hash, the file's sha256 and one digest per row; a file whose checksum does
not match is recomputed rather than trusted. The row digests make the cache work by item: when
one row of the data changes, the rows of the other items are taken from the entries already
saved for that encoder and only the new or changed items are encoded (`reusable_rows`).
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from benchmark.core.errors import BenchmarkError
from benchmark.core.io import CACHE_ENV, atomic_write_bytes, cache_dir, sha256_bytes

log = logging.getLogger(__name__)


class EmbeddingCache:
    """`<root>/embeddings/<encoder key>/<items hash>.npy` with a `.json` sidecar."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir()

    def check_writable(self) -> "EmbeddingCache":
        """Fail now, naming the folder and the fix, when embeddings could not be saved later."""

        probe = self.root / "embeddings" / f".write-test-{os.getpid()}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BenchmarkError(
                f"the embedding cache folder {self.root} cannot be written ({type(exc).__name__}: "
                f"{exc.strerror or exc}); "
                f"pass --cache-dir with a writable folder or set {CACHE_ENV}"
            ) from None
        return self

    def path(self, encoder_key: str, items_hash: str) -> Path:
        return self.root / "embeddings" / encoder_key / f"{items_hash}.npy"

    def load(self, encoder_key: str, items_hash: str, n_items: int) -> np.ndarray | None:
        entry = self.load_entry(encoder_key, items_hash, n_items)
        return None if entry is None else entry[0]

    def load_entry(self, encoder_key: str, items_hash: str, n_items: int | None) -> tuple[np.ndarray, dict] | None:
        """The matrix and its sidecar, checksum verified; None when absent or unusable (then recomputed)."""
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
            if n_items is not None and array.shape[0] != n_items:
                raise ValueError(f"{array.shape[0]} rows, expected {n_items}")
        except Exception as exc:
            log.warning("embedding cache file %s is unusable (%s); recomputing", path, exc)
            return None
        return array, meta

    def reusable_rows(self, encoder_key: str, digests: list[str]) -> tuple[dict[int, np.ndarray], set[str]]:
        """Rows already saved for this encoder, by position in `digests`, and which of those digests were
        truncated by the encoder. Entries are read newest first and only until every item is found."""
        wanted: dict[str, list[int]] = {}
        for i, digest in enumerate(digests):
            wanted.setdefault(digest, []).append(i)
        found: dict[int, np.ndarray] = {}
        truncated: set[str] = set()
        folder = self.root / "embeddings" / encoder_key
        sidecars = (
            sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
        )
        for sidecar in sidecars:
            if not wanted:
                break
            entry = self.load_entry(encoder_key, sidecar.stem, None)
            if entry is None or len(entry[1].get("items", ())) != entry[0].shape[0]:
                continue  # unusable, or saved before rows carried digests
            array, meta = entry
            saved_truncated = set(meta.get("truncated_items", ()))
            for row, digest in enumerate(meta["items"]):
                for i in wanted.pop(digest, ()):
                    found[i] = array[row]
                    if digest in saved_truncated:
                        truncated.add(digest)
        return found, truncated

    def save(self, encoder_key: str, items_hash: str, array: np.ndarray, meta: dict) -> Path | None:
        """Best effort: the cache only saves time, so a failed write (a full disk, a read-only folder) is a warning
        and the run goes on with the embeddings it has; None then. The sidecar is written last, so a half-saved
        entry is never trusted (`load` needs both and checks the checksum)."""
        path = self.path(encoder_key, items_hash)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        data = buffer.getvalue()
        sidecar = {**meta, "sha256": sha256_bytes(data), "shape": list(array.shape), "dtype": str(array.dtype)}
        try:
            atomic_write_bytes(path, data)
            atomic_write_bytes(path.with_suffix(".json"), json.dumps(sidecar, indent=2, sort_keys=True).encode())
        except OSError as exc:
            log.warning(
                "embedding cache: could not save %s (%s: %s, %.1f MB); the run goes on without caching it",
                path,
                type(exc).__name__,
                exc.strerror or exc,
                len(data) / 1e6,
            )
            return None
        return path
