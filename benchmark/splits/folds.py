"""Repeated grouped k-fold cross-validation: deterministic, balanced, checksummed folds.

Why not sklearn's GroupKFold: without `shuffle` it ignores the seed (every repeat would be the
same partition, the pitfall of DeepChem's ScaffoldSplitter), and with `shuffle` it balances the
number of *groups* per fold, not the number of pairs, so one large scaffold makes folds of very
different sizes. Here each repeat draws its own seeded order of the units (one molecule for the
`random` split, one Bemis-Murcko scaffold for `scaffold`); large units are placed first, each
unit goes to the currently lightest fold (ties broken by the seeded generator), so folds are
balanced in pairs to within one small unit and really differ between repeats.

A fold is a `Split`: `test` is the held-out fold, `train` and `val` partition the rest, with
`val` carved from that training portion with the same grouping (selection data never comes
from the test fold). `fit_split()` merges train and val for the final fit of a configuration.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

import numpy as np

from benchmark.core.errors import ConfigError, DataError
from benchmark.core.names import fold_name
from benchmark.data.cleaning import PairDataset
from benchmark.splits.splitters import SPLITS, Split, scaffold_groups

#: units of each non-leaky split kind
UNITS = {"random": "molecule", "scaffold": "scaffold"}
#: units larger than this share of a fold are placed first (then the rest in seeded order)
LARGE_UNIT_SHARE = 0.1


def unit_labels(dataset: PairDataset, split_name: str) -> np.ndarray:
    """An integer unit id per pair: its molecule (random) or its molecule's scaffold (scaffold)."""
    SPLITS.get(split_name)
    if split_name not in UNITS:
        raise ConfigError(
            f"repeated cross-validation needs a non-leaky split ({', '.join(UNITS)}); "
            f"{split_name!r} puts one molecule on both sides"
        )
    if split_name == "random":
        return np.asarray(dataset.mol_index, dtype=np.int64)
    of_molecule = np.empty(dataset.n_molecules, dtype=np.int64)
    for unit, (_, members) in enumerate(sorted(scaffold_groups(dataset).items())):
        of_molecule[members] = unit
    return of_molecule[np.asarray(dataset.mol_index)]


def assign_units(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per pair: whole units, balanced in pairs, a seeded assignment."""
    units, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    if len(units) < n_folds:
        raise DataError(f"{len(units)} units cannot fill {n_folds} folds; use fewer folds or more data")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(units))
    large = sizes[order] > LARGE_UNIT_SHARE * len(labels) / n_folds
    order = np.concatenate([order[large][np.argsort(-sizes[order[large]], kind="stable")], order[~large]])
    load = np.zeros(n_folds, dtype=np.int64)
    fold_of_unit = np.empty(len(units), dtype=np.int64)
    for unit in order:
        lightest = np.flatnonzero(load == load.min())
        fold = lightest[rng.integers(len(lightest))] if len(lightest) > 1 else lightest[0]
        fold_of_unit[unit] = fold
        load[fold] += sizes[unit]
    return fold_of_unit[inverse]


@dataclass(frozen=True)
class Fold:
    repeat: int
    index: int
    split: Split  # train / val (carved from the training portion) / test (the held-out fold)

    @property
    def name(self) -> str:
        return fold_name(self.repeat, self.index)

    @property
    def checksum(self) -> str:
        return self.split.checksum

    def fit_split(self) -> Split:
        """Training portion = train + val, for the final fit of a chosen or fixed configuration."""
        train = np.sort(np.concatenate([self.split.train, self.split.val]))
        return replace(self.split, train=train, val=np.empty(0, dtype=np.int64))

    def summary(self) -> dict:
        return {
            "name": self.name,
            "repeat": self.repeat,
            "fold": self.index,
            "n_train": int(len(self.split.train)),
            "n_val": int(len(self.split.val)),
            "n_test": int(len(self.split.test)),
            "checksum": self.checksum,
        }


@dataclass(frozen=True)
class FoldPlan:
    split_name: str
    unit: str
    n_folds: int
    n_repeats: int
    seed: int
    folds: tuple[Fold, ...]

    @property
    def checksum(self) -> str:
        payload = [self.split_name, self.n_folds, self.n_repeats, self.seed, [f.checksum for f in self.folds]]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]

    def verify(self, expected: str) -> None:
        """Refuse to go on when the folds are not the ones recorded (e.g. a resumed run on changed data)."""
        if expected != self.checksum:
            raise DataError(
                f"the folds' checksum is {self.checksum}, the run recorded {expected}: the data or the "
                "fold settings changed since; start a new run instead of resuming"
            )

    def summary(self) -> dict:
        return {
            "split": self.split_name,
            "unit": self.unit,
            "folds": self.n_folds,
            "repeats": self.n_repeats,
            "seed": self.seed,
            "checksum": self.checksum,
            "per_fold": [f.summary() for f in self.folds],
        }


def plan_folds(
    dataset: PairDataset,
    split_name: str,
    *,
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    inner_val_fraction: float = 0.125,
) -> FoldPlan:
    """`repeats` seeded k-fold assignments (repeat r uses seed + r), each fold with an inner validation side."""
    if folds < 2 or repeats < 1:
        raise ConfigError(f"repeated cross-validation needs folds >= 2 and repeats >= 1, got {folds} x {repeats}")
    if not 0 < inner_val_fraction < 0.5:
        raise ConfigError(f"inner_val_fraction must lie in (0, 0.5), got {inner_val_fraction}")
    labels = unit_labels(dataset, split_name)
    inner_folds = max(2, round(1 / inner_val_fraction))
    out = []
    for repeat in range(repeats):
        fold_of = assign_units(labels, folds, seed + repeat)
        for index in range(folds):
            test = np.flatnonzero(fold_of == index)
            rest = np.flatnonzero(fold_of != index)
            inner = assign_units(labels[rest], inner_folds, (seed + repeat) * 1_000 + index)
            val, train = rest[inner == 0], rest[inner != 0]
            split = Split(
                f"{split_name}-cv",
                seed + repeat,
                (len(train) / len(labels), len(val) / len(labels), len(test) / len(labels)),
                train,
                val,
                test,
                False,
                dataset.fingerprint,
            )
            out.append(Fold(repeat, index, split))
    return FoldPlan(split_name, UNITS[split_name], folds, repeats, seed, tuple(out))
