"""Perf sections for embeddings: the cache's second preparation, text encoding order."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import numpy as np

from benchmark.data.loaders import load_dataset
from benchmark.encoders import build_encoder
from benchmark.encoders.cache import EmbeddingCache
from benchmark.encoders.language_models import _length_sorted_batches, minilm_path
from benchmark.model.config import TrialConfig
from benchmark.perf.common import Report, _median, interleaved
from benchmark.splits.splitters import make_split
from benchmark.training.trial import prepare_trial_data


# ---------------------------------------------------------------------------------------- cache
def section_cache(report: Report, data: str | None) -> None:
    dataset = load_dataset(data)
    split = make_split(dataset, "scaffold", 0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp)
        runs = [prepare_trial_data(dataset, TrialConfig(), split, cache=cache) for _ in range(2)]
    report.add(
        "## Embedding cache",
        "",
        "ECFP4 + MiniLM for the ChEMBL snapshot, prepared twice with one empty cache folder "
        "(`encode_seconds` / `encoded_items` are the fields of the results JSON `timing`).",
        "",
        "| preparation | encoded items | encode_seconds |",
        "|---|---|---|",
        *[f"| {i + 1} | {r.encoded_items} | {r.encode_seconds:.3f} |" for i, r in enumerate(runs)],
        "",
    )
    report.target(
        f"a second run encodes nothing (measured {runs[1].encoded_items} items, {runs[1].encode_seconds:.3f} s)",
        runs[1].encoded_items == 0,
    )


# ------------------------------------------------------------------------------------- encoding
def section_encoding(report: Report, data: str | None, repeats: int) -> None:
    dataset = load_dataset(data)
    texts = sorted(set(dataset.texts("text_rich")))
    encoder = build_encoder("hf-text", model=minilm_path(), pooling="mean", batch_size=32, device="cpu")
    encoder.encode(texts[:64])  # load the model once

    def run(sort: bool) -> Callable[[], float]:
        def timed() -> float:
            encoder.sort_by_length = sort
            started = time.perf_counter()
            encoder.encode(texts)
            return time.perf_counter() - started

        return timed

    times = interleaved({"input order": run(False), "length-sorted": run(True)}, repeats)
    lengths = np.array([len(t) for t in texts])
    padded = {
        name: _padded_tokens(encoder, texts, sort) for name, sort in (("input order", False), ("length-sorted", True))
    }
    report.add(
        "## Text encoding throughput (transformers path)",
        "",
        f"`hf-text` (transformers AutoModel + mean pooling) on the offline all-MiniLM-L6-v2 weights, "
        f"{len(texts)} unique `text_rich` texts (characters: median {int(np.median(lengths))}, max {lengths.max()}), "
        f"batch 32, max_length 256, CPU, {repeats} interleaved repeats.",
        "",
        "| batches | padded tokens per text | median s | texts/s |",
        "|---|---|---|---|",
        *[
            f"| {name} | {padded[name]:.1f} | {_median(v):.2f} | {len(texts) / _median(v):.0f} |"
            for name, v in times.items()
        ],
        "",
        f"Length-sorted batches: {_median(times['input order']) / _median(times['length-sorted']):.2f}x; the "
        "vectors are the same (tested). The gain is what padding costs, so it grows with the spread of text "
        "lengths (narrow for these templated texts).",
        "",
    )


def _padded_tokens(encoder, texts: list[str], sort: bool) -> float:
    tokenizer = encoder._model[0]
    total = 0
    for index in _length_sorted_batches(texts, encoder.batch_size, sort):
        batch = tokenizer(
            [texts[i] for i in index], padding=True, truncation=True, max_length=encoder.params["max_length"]
        )
        total += len(batch["input_ids"]) * len(batch["input_ids"][0])
    return total / len(texts)
