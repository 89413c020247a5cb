"""A plugin encoder that knows nothing of the benchmark package: only the protocol."""

import numpy as np


class LetterCounts:
    """Bag of letters a-z plus digits, L2-normalised (a deliberately simple text encoder)."""

    modality = "text"
    description = "letter and digit counts (example plugin)"
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

    def __init__(self, name: str = "letter-counts", lowercase: bool = True):
        self.name = name
        self.params = {"lowercase": lowercase}

    def encode(self, items):
        out = np.zeros((len(items), len(self.alphabet)), dtype=np.float32)
        for row, text in enumerate(items):
            text = text.lower() if self.params["lowercase"] else text
            for ch in text:
                col = self.alphabet.find(ch)
                if col >= 0:
                    out[row, col] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
