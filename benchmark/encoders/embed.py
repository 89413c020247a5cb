"""Compute frozen embeddings once: encode through the cache, fit fitted encoders on training items."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from benchmark.core.errors import EncoderError
from benchmark.core.io import hash_items
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


def embed(
    encoder: Encoder,
    items: list[str],
    *,
    cache: EmbeddingCache | None = None,
    fit_items: list[str] | None = None,
    dataset_fingerprint: str | None = None,
) -> Embedded:
    """Encode `items` (or load them from the cache). Fitted encoders are fitted on `fit_items`."""
    cache = cache or EmbeddingCache()
    fit_hash = None
    if requires_fit(encoder):
        if fit_items is None:
            raise ValueError(f"encoder {encoder.name!r} learns from data: pass its training items as fit_items")
        fit_hash = hash_items(sorted(set(fit_items)))
    key = encoder_key(encoder, fit_hash)
    items_hash = hash_items(items)
    started = time.perf_counter()
    cached = cache.load(key, items_hash, len(items))
    if cached is not None:
        return Embedded(cached, key, items_hash, 0.0, True)
    log.info("encoding %d items with %s", len(items), encoder.name)
    try:
        if fit_hash is not None:
            encoder.fit(sorted(set(fit_items)))  # type: ignore[attr-defined]
        raw = encoder.encode(list(items))
    except EncoderError:
        raise
    except Exception as exc:  # a plugin's own bug or a model that cannot run: name the encoder
        raise EncoderError(
            f"encoder {encoder.name!r} ({type(encoder).__module__}.{type(encoder).__name__}) failed on {len(items)} "
            f"{encoder.modality} items: {type(exc).__name__}: {exc}. Nothing was cached; fix the encoder or pick "
            "another."
        ) from exc
    matrix = check_output(encoder, items, raw)
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
        },
    )
    return Embedded(matrix, key, items_hash, seconds, False)
