"""The encoder protocol: a frozen model that maps strings to float32 vectors.

An encoder has a `name`, a `modality` ("molecule" items are SMILES, "text" items are
sentences), JSON-serialisable `params`, and `encode(list[str]) -> float32 array`. Encoders
that learn from data (TF-IDF, descriptor scaling) also have `fit(list[str])`; the suite
fits them on training items only. Encoders whose outputs live in one space (the same model
applied to both modalities) declare the same `space`, which enables a plain-cosine baseline.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from benchmark.core.errors import EncoderError

Modality = Literal["molecule", "text"]


@runtime_checkable
class Encoder(Protocol):
    name: str
    modality: Modality
    params: dict[str, Any]

    def encode(self, items: list[str]) -> np.ndarray: ...


def requires_fit(encoder: Encoder) -> bool:
    return callable(getattr(encoder, "fit", None))


def encoder_space(encoder: Encoder) -> str | None:
    return getattr(encoder, "space", None)


def encoder_key(encoder: Encoder, fit_hash: str | None = None) -> str:
    """Cache identity: name + parameters + implementation version (+ what it was fitted on)."""
    identity = {
        "name": encoder.name,
        "modality": encoder.modality,
        "params": encoder.params,
        "version": getattr(encoder, "version", "1"),
        "fit": fit_hash,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{encoder.name}-{digest}"


#: the largest embedding value accepted (fingerprint counts, scaled descriptors and unit vectors are far below)
MAX_ABS_VALUE = 1e6


def check_output(encoder: Encoder, items: list[str], array: Any) -> np.ndarray:
    """Turn an encoder's answer into a float32 matrix, or explain what is wrong with it."""
    try:
        array = np.asarray(array, dtype=np.float32)
    except Exception as exc:
        raise EncoderError(f"encoder {encoder.name!r} returned something that is not a numeric array: {exc}") from exc
    if array.ndim != 2 or array.shape[0] != len(items):
        raise EncoderError(
            f"encoder {encoder.name!r} returned shape {array.shape} for {len(items)} items; "
            f"expected ({len(items)}, dim)"
        )
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise EncoderError(
            f"encoder {encoder.name!r} returned NaN or infinite values for {int(bad.sum())} item(s), "
            f"first {items[first]!r}"
        )
    largest = float(np.abs(array).max(initial=0.0))
    if largest > MAX_ABS_VALUE:  # finite in float32, but training on it overflows and learns nothing
        first = int(np.flatnonzero(np.abs(array).max(axis=1) > MAX_ABS_VALUE)[0])
        raise EncoderError(
            f"encoder {encoder.name!r} returned values up to {largest:.3g} (first for {items[first]!r}); embeddings "
            f"beyond {MAX_ABS_VALUE:g} in magnitude are refused: scale or normalise the encoder's output"
        )
    return np.ascontiguousarray(array)


class BaseEncoder:
    """Convenience base for built-ins: keeps name, modality and params together."""

    modality: ClassVar[Modality]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""

    def __init__(self, name: str, **params: Any):
        self.name = name
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params})"
