"""RDKit molecule encoders: fingerprints and standardised 2D descriptors.

Items are SMILES (the suite passes structure keys, i.e. salt-stripped canonical SMILES).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from rdkit import Chem
from rdkit.Chem import Descriptors, MACCSkeys, rdFingerprintGenerator

from benchmark.core.errors import EncoderError
from benchmark.data.chem import mol_from_smiles
from benchmark.encoders.base import BaseEncoder
from benchmark.encoders.graphs import index_features


def _mols(name: str, items: list[str]) -> list[Chem.Mol]:
    mols = []
    for smiles in items:
        mol = mol_from_smiles(smiles)
        if mol is None:
            raise EncoderError(f"encoder {name!r}: RDKit cannot parse SMILES {smiles!r}")
        mols.append(mol)
    return mols


class MorganFingerprint(BaseEncoder):
    """ECFP/FCFP as bits or counts (rdFingerprintGenerator)."""

    modality = "molecule"
    description = "Morgan fingerprint (ECFP/FCFP), bits or counts"

    def __init__(
        self,
        name: str,
        radius: int = 2,
        n_bits: int = 2048,
        features: bool = False,
        counts: bool = False,
        chirality: bool = False,
    ):
        super().__init__(name, radius=radius, n_bits=n_bits, features=features, counts=counts, chirality=chirality)

    @cached_property
    def generator(self):
        kwargs = {
            "radius": self.params["radius"],
            "fpSize": self.params["n_bits"],
            "includeChirality": self.params["chirality"],
        }
        if self.params["features"]:
            kwargs["atomInvariantsGenerator"] = rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
        return rdFingerprintGenerator.GetMorganGenerator(**kwargs)

    def encode(self, items: list[str]) -> np.ndarray:
        gen = self.generator
        as_numpy = gen.GetCountFingerprintAsNumPy if self.params["counts"] else gen.GetFingerprintAsNumPy
        return np.stack([as_numpy(m) for m in _mols(self.name, items)]).astype(np.float32)


class GeneratorFingerprint(BaseEncoder):
    """Atom-pair or topological-torsion fingerprints (rdFingerprintGenerator)."""

    modality = "molecule"
    description = "atom-pair / topological-torsion fingerprint"
    _factories = {
        "atom_pair": rdFingerprintGenerator.GetAtomPairGenerator,
        "torsion": rdFingerprintGenerator.GetTopologicalTorsionGenerator,
    }

    def __init__(self, name: str, kind: str = "atom_pair", n_bits: int = 2048, counts: bool = False):
        if kind not in self._factories:
            raise EncoderError(f"encoder {name!r}: kind must be one of {sorted(self._factories)}, got {kind!r}")
        super().__init__(name, kind=kind, n_bits=n_bits, counts=counts)

    def encode(self, items: list[str]) -> np.ndarray:
        gen = self._factories[self.params["kind"]](fpSize=self.params["n_bits"])
        as_numpy = gen.GetCountFingerprintAsNumPy if self.params["counts"] else gen.GetFingerprintAsNumPy
        return np.stack([as_numpy(m) for m in _mols(self.name, items)]).astype(np.float32)


class MACCSKeys(BaseEncoder):
    """The 166 MACCS structural keys (167 bits; bit 0 is always off)."""

    modality = "molecule"
    description = "MACCS keys (167 bits)"

    def __init__(self, name: str):
        super().__init__(name)

    def encode(self, items: list[str]) -> np.ndarray:
        rows = [np.array(list(MACCSkeys.GenMACCSKeys(m)), dtype=np.float32) for m in _mols(self.name, items)]
        return np.stack(rows)


class RDKit2DDescriptors(BaseEncoder):
    """All RDKit 2D descriptors, signed-log compressed then standardised with training statistics.

    `fit` must see training molecules only: the mean and scale come from them.
    """

    modality = "molecule"
    description = "RDKit 2D descriptors, standardised on training molecules"

    def __init__(self, name: str):
        super().__init__(name)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def _raw(self, items: list[str]) -> np.ndarray:
        names = [n for n, _ in Descriptors.descList]
        rows = []
        for mol in _mols(self.name, items):
            values = Descriptors.CalcMolDescriptors(mol, missingVal=np.nan)
            rows.append([values[n] for n in names])
        raw = np.asarray(rows, dtype=np.float64)
        raw = np.sign(raw) * np.log1p(np.abs(raw))  # tame heavy tails (molecular weight, Ipc)
        return raw

    def fit(self, items: list[str]) -> None:
        raw = self._raw(items)
        self.mean_ = np.nanmean(raw, axis=0)
        std = np.nanstd(raw, axis=0)
        self.mean_ = np.nan_to_num(self.mean_)
        self.scale_ = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)

    def encode(self, items: list[str]) -> np.ndarray:
        if self.mean_ is None:
            raise EncoderError(f"encoder {self.name!r} must be fitted on training molecules before encoding")
        z = (self._raw(items) - self.mean_) / self.scale_
        return np.clip(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), -10, 10).astype(np.float32)


class GraphInput(BaseEncoder):
    """The graph encoder's place in the registry: it is trained with the bridge (`benchmark.graphs`), so what
    it hands the suite is each molecule's index; its graphs are featurised and cached by `prepare_trial_data`."""

    modality = "molecule"
    trainable = True
    description = "trainable GINE graph encoder (benchmark.graphs)"

    def encode(self, items: list[str]) -> np.ndarray:
        return index_features(len(items))
