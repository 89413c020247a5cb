"""Plugin encoders that know nothing of the benchmark package: only the protocol (see `benchmark.encoders.checks`).

- `LetterCounts` (entry point `letter-counts`): a text encoder without `fit`.
- `MaccsDescriptors` (entry point `maccs-desc`): a molecule encoder with `fit` - MACCS keys plus ten RDKit
  descriptors, the descriptors z-scored with the mean and spread of the items `fit` saw (the suite calls `fit` on
  training molecules only, twice per fold).
"""

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


DESCRIPTORS = ("MolWt", "MolLogP", "TPSA", "NumHDonors", "NumHAcceptors", "NumRotatableBonds", "RingCount",
               "NumAromaticRings", "FractionCSP3", "HeavyAtomCount")  # fmt: skip


class MaccsDescriptors:
    """MACCS keys (167 bits) and ten RDKit descriptors, z-scored on the molecules `fit` saw."""

    modality = "molecule"
    description = "MACCS keys + 10 RDKit descriptors, z-scored on training molecules (example plugin)"
    version = "1"

    def __init__(self, name: str = "maccs-desc", descriptor_weight: float = 1.0):
        self.name = name
        self.params = {"descriptor_weight": descriptor_weight, "descriptors": list(DESCRIPTORS)}
        self.mean = None
        self.scale = None

    @staticmethod
    def _raw(items):
        from rdkit import Chem, DataStructs
        from rdkit.Chem import Descriptors, MACCSkeys

        keys, values = np.zeros((len(items), 167), dtype=np.float32), np.zeros((len(items), len(DESCRIPTORS)))
        for row, smiles in enumerate(items):
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                raise ValueError(f"invalid SMILES {smiles!r}")
            DataStructs.ConvertToNumpyArray(MACCSkeys.GenMACCSKeys(mol), keys[row])
            values[row] = [getattr(Descriptors, d)(mol) for d in DESCRIPTORS]
        return keys, values

    def fit(self, items):
        _, values = self._raw(items)
        self.mean, self.scale = values.mean(axis=0), values.std(axis=0) + 1e-6

    def encode(self, items):
        if self.mean is None:
            raise RuntimeError("maccs-desc: call fit on training molecules before encode")
        keys, values = self._raw(items)
        scaled = (values - self.mean) / self.scale * self.params["descriptor_weight"]
        return np.hstack([keys, np.clip(scaled, -10, 10)]).astype(np.float32)
