"""Pretrained encoders whose weights ship inside their PyPI packages, so they run offline.

- `chemnet` (molecule): ChemNet from `fcd-torch`, the network behind the Frechet ChemNet Distance, trained
  to predict bioactivity assays from SMILES; its 512-d penultimate layer is a learned molecule view beside
  ECFP4. It reads at most `CHEMNET_MAX_TOKENS` SMILES symbols and cuts the rest.
- `wordllama` (text): WordLlama's static token embeddings (`l2_supercat`, 256-d), mean-pooled over the
  tokens: a second text encoder, far faster than a transformer, with no length limit.

Both say which items they cut (`truncated`), which the suite reports beside the encoder.
"""

from __future__ import annotations

import re
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np

from benchmark.core.errors import EncoderError
from benchmark.encoders.base import BaseEncoder

#: ChemNet pads or cuts every SMILES to 350 one-hot rows, the last being the end symbol
CHEMNET_MAX_TOKENS = 349
_CHEMNET_SYMBOL = re.compile(r".[ril]?", re.DOTALL)  # fcd-torch's tokeniser: Cl, Br, Si take two characters
WORDLLAMA_TOKENIZER = "l2_supercat_tokenizer_config.json"


def _missing(name: str, package: str, exc: Exception) -> EncoderError:
    return EncoderError(f"encoder {name!r} needs the package {package}: pip install {package} ({exc})")


class ChemNetEncoder(BaseEncoder):
    """ChemNet (fcd-torch) activations of the penultimate layer, one 512-d row per SMILES."""

    modality = "molecule"
    description = "ChemNet (fcd-torch): pretrained SMILES network, 512-d"

    def __init__(self, name: str, batch_size: int = 256):
        super().__init__(name, model="ChemNet_v0.13")
        self.batch_size = batch_size

    @cached_property
    def _model(self):
        try:
            from fcd_torch import FCD  # fcd-torch: imported only when ChemNet is asked for
        except ImportError as exc:
            raise _missing(self.name, "fcd-torch", exc) from exc
        return FCD(device="cpu", n_jobs=1, batch_size=self.batch_size, canonize=True)

    def truncated(self, items: list[str]) -> list[bool]:
        """SMILES longer than ChemNet reads (their tail is cut)."""
        return [len(_CHEMNET_SYMBOL.findall(s)) > CHEMNET_MAX_TOKENS for s in items]

    def encode(self, items: list[str]) -> np.ndarray:
        try:
            return np.asarray(self._model.get_predictions(list(items)), dtype=np.float32)
        except ValueError as exc:  # fcd-torch raises ValueError("Got invalid SMILES ...")
            raise EncoderError(f"encoder {self.name!r}: {exc}") from exc


class WordLlamaEncoder(BaseEncoder):
    """WordLlama static embeddings, mean-pooled over tokens and L2-normalised."""

    modality = "text"
    description = "WordLlama (l2_supercat): static token embeddings, 256-d"

    def __init__(self, name: str, config: str = "l2_supercat", dim: int = 256, batch_size: int = 64):
        super().__init__(name, config=config, dim=dim)
        self.batch_size = batch_size

    @cached_property
    def _model(self):
        try:
            import wordllama  # wordllama: imported only when its encoder is asked for
        except ImportError as exc:
            raise _missing(self.name, "wordllama", exc) from exc
        # the wheel ships the tokenizer in wordllama/tokenizers/, which `load` does not look in; a cache folder
        # holding links to it (both spellings the releases use) lets it load with downloads disabled
        shipped = Path(wordllama.__file__).parent / "tokenizers" / WORDLLAMA_TOKENIZER
        with tempfile.TemporaryDirectory(prefix="benchmark-wordllama-") as tmp:  # read while loading, then gone
            folder = Path(tmp)
            for sub in ("tokenizers", "tokenizer"):
                (folder / sub).mkdir()
                (folder / sub / WORDLLAMA_TOKENIZER).symlink_to(shipped)
            try:
                return wordllama.WordLlama.load(
                    self.params["config"], cache_dir=folder, dim=self.params["dim"], disable_download=True
                )
            except (FileNotFoundError, ValueError) as exc:
                raise EncoderError(f"encoder {self.name!r}: cannot load WordLlama offline ({exc})") from exc

    def truncated(self, items: list[str]) -> list[bool]:
        return [False] * len(items)  # static embeddings: every token is read

    def encode(self, items: list[str]) -> np.ndarray:
        model = self._model
        out = np.zeros((len(items), self.params["dim"]), dtype=np.float32)
        order = np.argsort([len(t) for t in items], kind="stable")  # similar lengths share a padded batch
        for start in range(0, len(items), self.batch_size):
            index = order[start : start + self.batch_size]
            out[index] = model.embed([items[i] for i in index], norm=False, batch_size=self.batch_size)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
