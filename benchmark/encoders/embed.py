"""Compute frozen embeddings once: encode through the cache, fit fitted encoders on training items."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from benchmark.core.errors import EncoderError
from benchmark.core.io import hash_items, item_digests
from benchmark.encoders.base import Encoder, check_output, encoder_key, requires_fit
from benchmark.encoders.cache import EmbeddingCache

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    """An embedding matrix aligned to `items`, and what it cost."""

    matrix: np.ndarray
    encoder_key: str
    items_hash: str
    seconds: float
    from_cache: bool
    #: items encoded now (the rest came from the cache, whole or by item)
    encoded: int = 0
    #: items longer than the encoder reads (cut by its tokenizer); None when the encoder cannot say
    truncated: int | None = None


_SAID: set[tuple[str, str]] = set()  # (encoder key, items hash) whose cut items were already reported


def _say_truncated(encoder: Encoder, key: str, items_hash: str, truncated: int | None, n: int) -> None:
    if truncated and (key, items_hash) not in _SAID:
        _SAID.add((key, items_hash))
        log.warning(
            "%s: %d of %d %s items are longer than it reads; their tails were cut",
            encoder.name,
            truncated,
            n,
            encoder.modality,
        )


def truncation_flags(encoder: Encoder, items: list[str]) -> np.ndarray | None:
    """Which of `items` the encoder cuts (its optional `truncated(items) -> bools`); None when it does not say."""
    flags = getattr(encoder, "truncated", None)
    if not callable(flags):
        return None
    return np.asarray(flags(items) if items else [], dtype=bool).reshape(len(items))


def _assemble(found: dict[int, np.ndarray], missing: list[int], new: np.ndarray | None, n: int) -> np.ndarray:
    """Rows from the cache and rows encoded now, in the items' order."""
    rows = [found[i] for i in sorted(found)]
    dim = (new.shape[1] if new is not None else rows[0].shape[0]) if (rows or new is not None) else 0
    matrix = np.empty((n, dim), dtype=np.float32)
    if found:
        matrix[sorted(found)] = np.stack(rows)
    if new is not None:
        matrix[missing] = new
    return matrix


def _encode(encoder: Encoder, items: list[str], fit_items: list[str] | None) -> np.ndarray:
    try:
        if fit_items is not None:
            encoder.fit(fit_items)  # type: ignore[attr-defined]
        raw = encoder.encode(list(items))
    except EncoderError:
        raise
    except Exception as exc:  # a plugin's own bug or a model that cannot run: name the encoder
        raise EncoderError(
            f"encoder {encoder.name!r} ({type(encoder).__module__}.{type(encoder).__name__}) failed on {len(items)} "
            f"{encoder.modality} items: {type(exc).__name__}: {exc}. Nothing was cached; fix the encoder or pick "
            "another."
        ) from exc
    return check_output(encoder, items, raw)


def embed(
    encoder: Encoder,
    items: list[str],
    *,
    cache: EmbeddingCache | None = None,
    fit_items: list[str] | None = None,
    dataset_fingerprint: str | None = None,
) -> Embedded:
    """Encode `items` (or load them from the cache, whole or by item). Fitted encoders are fitted on `fit_items`.

    A frozen encoder reuses the rows of items it has already encoded in any saved entry and encodes only the
    new or changed ones; a fitted encoder (its key holds what it was fitted on) is all or nothing."""
    cache = cache or EmbeddingCache()
    fit_hash = fit_on = None
    if requires_fit(encoder):
        if fit_items is None:
            raise ValueError(f"encoder {encoder.name!r} learns from data: pass its training items as fit_items")
        fit_on = sorted(set(fit_items))
        fit_hash = hash_items(fit_on)
    key = encoder_key(encoder, fit_hash)
    items_hash = hash_items(items)
    started = time.perf_counter()
    hit = cache.load_entry(key, items_hash, len(items))
    if hit is not None:
        truncated = hit[1].get("truncated")
        truncated = None if truncated is None else int(truncated)
        _say_truncated(encoder, key, items_hash, truncated, len(items))
        return Embedded(hit[0], key, items_hash, 0.0, True, 0, truncated)
    digests = item_digests(items)
    found, truncated_found = ({}, set()) if fit_hash is not None else cache.reusable_rows(key, digests)
    missing = [i for i in range(len(items)) if i not in found]
    log.info("encoding %d of %d items with %s (%d from the cache)", len(missing), len(items), encoder.name, len(found))
    new = _encode(encoder, [items[i] for i in missing], fit_on) if missing or not found else None
    matrix = _assemble(found, missing, new, len(items))
    flags = truncation_flags(encoder, [items[i] for i in missing])
    cut = truncated_found | ({digests[i] for i, f in zip(missing, flags) if f} if flags is not None else set())
    truncated = None if flags is None else sum(d in cut for d in digests)
    _say_truncated(encoder, key, items_hash, truncated, len(items))
    seconds = time.perf_counter() - started
    cache.save(
        key,
        items_hash,
        matrix,
        {
            "encoder": encoder.name,
            "modality": encoder.modality,
            "params": encoder.params,
            "n_items": len(items),
            "dataset_fingerprint": dataset_fingerprint,
            "fit_hash": fit_hash,
            "encode_seconds": round(seconds, 3),
            "encoded_items": len(missing),
            "truncated": truncated,
            "truncated_items": sorted(cut),
            "items": digests,
        },
    )
    return Embedded(matrix, key, items_hash, seconds, False, len(missing), truncated)
