"""`check_encoder`: the encoder contract, checked on a few items, for a plugin author's own tests.

Like scikit-learn's `check_estimator`: call it in your plugin's tests with your encoder (or its registered name)
and it fails with one message naming the rule your encoder breaks, before a benchmark run would.

    from benchmark.encoders import check_encoder
    check_encoder(MyEncoder(name="my-encoder"))        # or check_encoder("my-encoder") once installed

The contract (what the suite relies on):

- `name` (str), `modality` ("molecule": items are SMILES; "text": sentences), `params` (a JSON-serialisable dict:
  it is part of the cache key), and optionally `description` (what `list encoders` shows), `version` (bump it
  when outputs change, so cached embeddings are not reused), `space` (a shared space with the other modality).
- `encode(list[str])` returns one finite float row per item, of one width, the same rows for the same items
  whatever the batch or the order (the suite encodes in batches, and caches rows per item).
- `fit(list[str])`, if present, learns from training items only (the suite calls it on each fold's training
  items, twice per fold: once for tuning on the inner training side, once for the fold's fit) and returns
  nothing the suite uses; after it `encode` obeys the rules above.
- `truncated(list[str]) -> list[bool]`, if present, says which items are longer than the encoder reads (their
  tails are cut): the suite counts them, caches the count and reports it.
- Size and place are the encoder's own: a transformer plugin takes `batch_size` and `device` parameters (through
  `--mol-encoder-param` / `params` in a search space), as the built-in `hf-text` does.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from benchmark.core.errors import EncoderError
from benchmark.encoders.base import Encoder, check_output, requires_fit
from benchmark.encoders.registry import build_encoder

#: items the check encodes when none are given (real drugs and mechanism sentences)
SAMPLE = {
    "molecule": [
        "CC(=O)Oc1ccccc1C(=O)O",
        "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
        "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
        "C[C@H](N)C(=O)O",
        "C[C@@H](N)C(=O)O",
        "OCC1OC(O)C(O)C(O)C1O",
    ],
    "text": [
        "Cyclooxygenase inhibitor",
        "Adenosine receptor antagonist",
        "Beta-2 adrenergic receptor agonist",
        "Dopamine D2 receptor antagonist",
        "Histamine H1 receptor antagonist",
        "Serotonin transporter inhibitor",
    ],
}


def _fail(encoder: Any, rule: str) -> None:
    raise EncoderError(f"encoder {getattr(encoder, 'name', encoder)!r} breaks the encoder contract: {rule}")


def check_encoder(encoder: Encoder | str, items: list[str] | None = None, *, atol: float = 1e-5) -> dict:
    """Check `encoder` (an instance, or a registered name) against the contract on `items` (default: a few real
    ones of its modality); returns what was found (`width`, `fits`). Raises `EncoderError` naming the broken rule."""
    if isinstance(encoder, str):
        encoder = build_encoder(encoder)
    for attribute in ("name", "modality", "params", "encode"):
        if not hasattr(encoder, attribute):
            _fail(encoder, f"it has no `{attribute}`")
    if not isinstance(encoder.name, str) or not encoder.name:
        _fail(encoder, "`name` must be a non-empty string")
    if encoder.modality not in SAMPLE:
        _fail(encoder, f"`modality` must be 'molecule' or 'text', not {encoder.modality!r}")
    if not isinstance(encoder.params, dict):
        _fail(encoder, f"`params` must be a dict, not {type(encoder.params).__name__}")
    try:
        json.dumps(encoder.params, sort_keys=True)
    except TypeError as exc:
        _fail(encoder, f"`params` must be JSON-serialisable (it keys the embedding cache): {exc}")
    items = list(items or SAMPLE[encoder.modality])
    if len(items) < 3:
        _fail(encoder, "give at least three items to check")
    fits = requires_fit(encoder)
    if fits:
        encoder.fit(items)
    whole = check_output(encoder, items, encoder.encode(items))  # shape, finite, not absurdly large
    again = check_output(encoder, items, encoder.encode(items))
    if not np.allclose(whole, again, atol=atol):
        _fail(encoder, "encoding the same items twice gave different rows (it must be deterministic)")
    order = np.arange(len(items))[::-1]
    shuffled = check_output(encoder, [items[i] for i in order], encoder.encode([items[i] for i in order]))
    if not np.allclose(shuffled, whole[order], atol=atol):
        _fail(encoder, "an item's row changed with the order of the batch (rows must depend on their item alone)")
    one = np.vstack([check_output(encoder, [item], encoder.encode([item])) for item in items[:3]])
    if one.shape[1] != whole.shape[1] or not np.allclose(one, whole[:3], atol=atol):
        _fail(encoder, "an item encoded alone gave another row than in a batch (rows must not depend on the batch)")
    flags = getattr(encoder, "truncated", None)
    if flags is not None:
        if not callable(flags):
            _fail(encoder, "`truncated` must be a method: truncated(items) -> one bool per item (cut or not)")
        said = np.asarray(flags(items))
        if said.shape != (len(items),) or said.dtype != bool:
            _fail(encoder, f"truncated(items) must give one bool per item, got {said.dtype} of shape {said.shape}")
    if not isinstance(getattr(encoder, "description", ""), str):
        _fail(encoder, "`description` must be a string (what `list encoders` shows)")
    return {"width": int(whole.shape[1]), "fits": fits}
