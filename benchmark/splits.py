"""Leak-free train/val/test splits, deterministic in a seed and checksummed.

- `random`: molecule-disjoint; every pair of one structure falls on one side.
- `scaffold`: Bemis-Murcko scaffolds disjoint across sides (balanced scaffold split: large
  scaffold sets go to train first, the rest in seeded random order).
- `pair`: pair-level random, so a molecule can sit in train and test. Leaky; kept only to
  compare with published numbers and labelled so wherever it appears.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from benchmark.chem import murcko_scaffold
from benchmark.data.cleaning import PairDataset
from benchmark.errors import ConfigError, DataError
from benchmark.registry import Registry

SIDES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Row indices (into `dataset.pairs`) of each side."""

    name: str
    seed: int
    fractions: tuple[float, float, float]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    leaky: bool
    dataset_fingerprint: str

    def rows(self, side: str) -> np.ndarray:
        if side not in SIDES:
            raise ConfigError(f"unknown split side {side!r}; use one of {SIDES}")
        return getattr(self, side)

    @property
    def checksum(self) -> str:
        payload = {"name": self.name, "seed": self.seed, "fractions": self.fractions,
                   "dataset": self.dataset_fingerprint, **{s: self.rows(s).tolist() for s in SIDES}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> dict:
        return {"name": self.name, "seed": self.seed, "fractions": list(self.fractions), "leaky": self.leaky,
                "n_train": int(len(self.train)), "n_val": int(len(self.val)), "n_test": int(len(self.test)),
                "checksum": self.checksum}


def check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1 (train, val, test); got {fractions}")
    if fractions[0] <= 0 or fractions[2] <= 0:
        raise ConfigError(f"split fractions need a non-empty train and test side; got {fractions}")
    return fractions  # type: ignore[return-value]


def _assign_groups(groups: list[np.ndarray], n_total: int, fractions) -> list[list[int]]:
    """Whole groups, in the given order, into train if it has room, else val, else test."""
    room = [fractions[0] * n_total, fractions[1] * n_total]
    sides: list[list[int]] = [[], [], []]
    for group in groups:
        if len(sides[0]) + len(group) <= room[0]:
            side = 0
        elif len(sides[1]) + len(group) <= room[1]:
            side = 1
        else:
            side = 2
        sides[side].extend(group.tolist())
    return sides


def _molecule_groups_to_rows(dataset: PairDataset, mol_sides: list[list[int]]) -> list[np.ndarray]:
    mol_index = dataset.mol_index
    side_of = np.empty(dataset.n_molecules, dtype=np.int64)
    for side, mols in enumerate(mol_sides):
        side_of[mols] = side
    pair_side = side_of[mol_index]
    return [np.flatnonzero(pair_side == s) for s in range(3)]


def random_split(dataset: PairDataset, seed: int, fractions) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(dataset.n_molecules)
    groups = [np.array([m]) for m in order]
    return _molecule_groups_to_rows(dataset, _assign_groups(groups, dataset.n_molecules, fractions))


def scaffold_groups(dataset: PairDataset) -> dict[str, np.ndarray]:
    """Molecule indices per Bemis-Murcko scaffold (acyclic molecules share the '' scaffold)."""
    by_scaffold: dict[str, list[int]] = {}
    for index, key in enumerate(dataset.molecules):
        by_scaffold.setdefault(murcko_scaffold(key), []).append(index)
    return {s: np.array(m) for s, m in by_scaffold.items()}


def scaffold_split(dataset: PairDataset, seed: int, fractions) -> list[np.ndarray]:
    groups = scaffold_groups(dataset)
    n = dataset.n_molecules
    big_cut = fractions[2] * n / 2  # sets larger than half the test side would unbalance val/test
    names = sorted(groups)
    big = sorted((s for s in names if len(groups[s]) > big_cut), key=lambda s: (-len(groups[s]), s))
    small = [s for s in names if len(groups[s]) <= big_cut]
    rng = np.random.default_rng(seed)
    small = [small[i] for i in rng.permutation(len(small))]
    ordered = [groups[s] for s in big + small]
    return _molecule_groups_to_rows(dataset, _assign_groups(ordered, n, fractions))


def pair_split(dataset: PairDataset, seed: int, fractions) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(dataset.n_pairs)
    cut1 = int(round(fractions[0] * dataset.n_pairs))
    cut2 = int(round((fractions[0] + fractions[1]) * dataset.n_pairs))
    return [np.sort(order[:cut1]), np.sort(order[cut1:cut2]), np.sort(order[cut2:])]


@dataclass(frozen=True)
class SplitMethod:
    function: Callable[[PairDataset, int, tuple], list[np.ndarray]]
    leaky: bool
    description: str


SPLITS: Registry[SplitMethod] = Registry("split")
SPLITS.register("random", SplitMethod(random_split, False, "molecule-disjoint random split"))
SPLITS.register("scaffold", SplitMethod(scaffold_split, False, "Bemis-Murcko scaffold-disjoint split"))
SPLITS.register("pair", SplitMethod(pair_split, True, "pair-level random split (LEAKY: molecules shared across sides)"))


def make_split(dataset: PairDataset, name: str = "random", seed: int = 0,
               fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Split:
    method = SPLITS.get(name)
    fractions = check_fractions(fractions)
    if dataset.n_molecules < 10:
        raise DataError(f"{dataset.source}: {dataset.n_molecules} molecules are too few to split into train/val/test")
    train, val, test = method.function(dataset, seed, fractions)
    for side, rows in zip(SIDES, (train, val, test)):
        wanted = dict(zip(SIDES, fractions))[side]
        if wanted > 0 and len(rows) == 0:
            raise DataError(
                f"{dataset.source}: the {name} split left the {side} side empty "
                f"({dataset.n_molecules} molecules, fractions {fractions}); use more data or other fractions"
            )
    return Split(name, seed, fractions, np.sort(train), np.sort(val), np.sort(test), method.leaky, dataset.fingerprint)
