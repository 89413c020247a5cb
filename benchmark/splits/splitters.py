"""Leak-free train/val/test splits, deterministic in a seed and checksummed.

- `random`: molecule-disjoint; every pair of one structure falls on one side.
- `scaffold`: Bemis-Murcko scaffolds disjoint across sides (balanced scaffold split: large
  scaffold sets go to train first, the rest in seeded random order).
- `pair`: pair-level random, so a molecule can sit in train and test. Leaky; kept only to
  compare with published numbers and labelled so wherever it appears.
- `prospective`: train and validation on approved molecules (phase 4), test on investigational
  ones (phase 1-3, never approved): structure-disjoint by construction. Molecule-to-text ranks
  against every distinct text of the dataset (a new compound usually acts on a known mechanism).
- `published`: the split a bring-your-own file gives in a column (train / val / test); a
  structure on two sides is counted and labels the split LEAKY.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from benchmark.core.errors import ConfigError, DataError
from benchmark.core.registry import Registry
from benchmark.data.chem import murcko_scaffold
from benchmark.data.cleaning import PairDataset

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
    #: molecule-to-text gallery: the evaluated side's texts ("side") or every text of the dataset ("dataset")
    text_gallery: str = "side"
    #: what a split method reports about itself (phases, shared scaffolds, structures on two sides)
    details: dict = field(default_factory=dict, compare=False, hash=False)

    def rows(self, side: str) -> np.ndarray:
        if side not in SIDES:
            raise ConfigError(f"unknown split side {side!r}; use one of {SIDES}")
        return getattr(self, side)

    @property
    def checksum(self) -> str:
        payload = {
            "name": self.name,
            "seed": self.seed,
            "fractions": self.fractions,
            "dataset": self.dataset_fingerprint,
            **{s: self.rows(s).tolist() for s in SIDES},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> dict:
        out = {
            "name": self.name,
            "seed": self.seed,
            "fractions": list(self.fractions),
            "leaky": self.leaky,
            "n_train": int(len(self.train)),
            "n_val": int(len(self.val)),
            "n_test": int(len(self.test)),
            "checksum": self.checksum,
        }
        if self.text_gallery != "side":
            out["text_gallery"] = self.text_gallery
        return {**out, **({"details": self.details} if self.details else {})}


def check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(
            f"split fractions must be three non-negative numbers summing to 1 (train, val, test); got {fractions}"
        )
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


def _molecule_groups_to_rows(
    dataset: PairDataset, mol_sides: list[list[int]], *, keep_unassigned: bool = False
) -> list[np.ndarray]:
    mol_index = dataset.mol_index
    side_of = np.full(dataset.n_molecules, -1 if keep_unassigned else 0, dtype=np.int64)
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


def _scaffold_cause(dataset: PairDataset) -> str:
    """Why a scaffold split cannot fill a side: its largest scaffolds, named, and what to do."""
    groups = sorted(scaffold_groups(dataset).items(), key=lambda item: -len(item[1]))
    top, members = groups[0]
    label = repr(top) if top else "'' (acyclic molecules, which have no ring scaffold)"
    return (
        f"the largest Bemis-Murcko scaffold, {label}, holds {len(members)} of {dataset.n_molecules} molecules "
        f"({len(groups)} scaffold{'s' if len(groups) != 1 else ''} in all) and a scaffold never spans two sides: "
        "use a split that does not group by scaffold (random), or data with more scaffolds"
    )


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


def prospective_split(dataset: PairDataset, seed: int, fractions) -> list[np.ndarray]:
    """Approved molecules (phase 4) to train and validation (random, by molecule, in the ratio of the first two
    fractions), investigational ones (phase 1-3) to test; molecules without a known phase are left out."""
    phases = dataset.molecule_phases()
    if phases is None:
        raise DataError(
            f"{dataset.source}: the prospective split needs each molecule's clinical phase (a max_phase "
            "column); use the clinical dataset (--dataset clinical)"
        )
    approved = np.flatnonzero(phases >= 4)
    investigational = np.flatnonzero((phases >= 1) & (phases < 4))
    if len(investigational) == 0 or len(approved) == 0:
        raise DataError(
            f"{dataset.source}: the prospective split needs approved (phase 4) and investigational "
            f"(phase 1-3) molecules; found {len(approved)} and {len(investigational)}. Use --dataset clinical"
        )
    order = np.random.default_rng(seed).permutation(approved)
    n_val = int(round(len(approved) * fractions[1] / (fractions[0] + fractions[1])))
    return _molecule_groups_to_rows(
        dataset, [order[n_val:].tolist(), order[:n_val].tolist(), investigational.tolist()], keep_unassigned=True
    )


def describe_prospective(dataset: PairDataset, sides: list[np.ndarray]) -> dict:
    """Phases of the test molecules and how many share a Bemis-Murcko scaffold with a training molecule."""
    phases = dataset.molecule_phases()
    train_mols = np.unique(dataset.mol_index[sides[0]])
    test_mols = np.unique(dataset.mol_index[sides[2]])
    train_scaffolds = {murcko_scaffold(dataset.molecules[m]) for m in train_mols}
    shared = sum(murcko_scaffold(dataset.molecules[m]) in train_scaffolds for m in test_mols)
    by_phase = {str(int(p)): int((phases[test_mols] == p).sum()) for p in sorted(set(phases[test_mols].tolist()))}
    pairs_by_phase = {
        str(int(p)): int((phases[dataset.mol_index[sides[2]]] == p).sum())
        for p in sorted(set(phases[test_mols].tolist()))
    }
    unknown = int(np.isnan(phases).sum())
    return {
        "test_molecules_by_phase": by_phase,
        "test_pairs_by_phase": pairs_by_phase,
        "test_molecules_sharing_a_train_scaffold": int(shared),
        "test_molecules": int(len(test_mols)),
        "molecules_without_phase_left_out": unknown,
    }


PUBLISHED_LABELS = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}


def published_split(dataset: PairDataset, seed: int, fractions) -> list[np.ndarray]:
    """The sides a bring-your-own file gives in its split column (seed and fractions do not apply)."""
    labels = dataset.split_labels
    if labels is None:
        raise ConfigError(f"{dataset.source}: the published split needs a split column (--split-column NAME)")
    unknown = sorted({str(v) for v in labels} - set(PUBLISHED_LABELS))
    if unknown:
        counts = {v: int((labels == v).sum()) for v in unknown[:5]}
        raise DataError(
            f"{dataset.source}: split column values {counts} are not train / val (valid, validation) / "
            "test; fix or drop those rows"
        )
    side = np.array([PUBLISHED_LABELS[str(v)] for v in labels])
    return [np.flatnonzero(side == s) for s in range(3)]


def shared_structures(dataset: PairDataset, sides: list[np.ndarray]) -> dict[str, int]:
    """Structures (molecules) that appear on two sides, per pair of sides (0 everywhere for a leak-free split)."""
    mols = [set(np.unique(dataset.mol_index[rows]).tolist()) for rows in sides]
    return {f"{SIDES[a]}-{SIDES[b]}": len(mols[a] & mols[b]) for a, b in ((0, 1), (0, 2), (1, 2))}


@dataclass(frozen=True)
class SplitMethod:
    function: Callable[[PairDataset, int, tuple], list[np.ndarray]]
    leaky: bool
    description: str
    text_gallery: str = "side"
    describe: Callable[[PairDataset, list[np.ndarray]], dict] | None = None
    uses_fractions: bool = True


SPLITS: Registry[SplitMethod] = Registry("split")
SPLITS.register("random", SplitMethod(random_split, False, "molecule-disjoint random split"))
SPLITS.register("scaffold", SplitMethod(scaffold_split, False, "Bemis-Murcko scaffold-disjoint split"))
SPLITS.register("pair", SplitMethod(pair_split, True, "pair-level random split (LEAKY: molecules shared across sides)"))
SPLITS.register(
    "prospective",
    SplitMethod(
        prospective_split,
        False,
        "train/val on approved molecules, test on investigational ones (phase 1-3); "
        "molecule-to-text against every text of the dataset",
        text_gallery="dataset",
        describe=describe_prospective,
    ),
)
SPLITS.register(
    "published",
    SplitMethod(
        published_split,
        False,
        "the train/val/test column of a bring-your-own file (LEAKY when a structure sits on two sides)",
        uses_fractions=False,
    ),
)


def without_leaks(dataset: PairDataset, split: Split) -> Split:
    """The split with its leaked queries dropped: validation pairs whose structure is in train, and test pairs
    whose structure is in train or validation. Train is untouched, so a bridge trained on either split is the same;
    `details.leaked_pairs_dropped` counts what went. A leak-free split comes back unchanged."""
    if not split.leaky:
        return split
    mol = dataset.mol_index
    seen_train = np.isin(mol[split.val], mol[split.train])
    seen_before = np.isin(mol[split.test], np.concatenate([mol[split.train], mol[split.val]]))
    val, test = split.val[~seen_train], split.test[~seen_before]
    if len(test) == 0:
        raise DataError(
            f"{dataset.source}: every test pair of the {split.name} split shares its structure with train or "
            "validation; nothing is left once the leaked queries are dropped"
        )
    dropped = {"val": int(seen_train.sum()), "test": int(seen_before.sum())}
    details = {**split.details, "leaked_pairs_dropped": dropped, "leaky_split_checksum": split.checksum}
    sides = [split.train, val, test]
    leaky = any(shared_structures(dataset, sides).values())
    return replace(split, val=val, test=test, leaky=leaky, details=details)


def make_split(
    dataset: PairDataset, name: str = "random", seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> Split:
    method = SPLITS.get(name)
    fractions = check_fractions(fractions)
    if dataset.n_molecules < 10:
        raise DataError(f"{dataset.source}: {dataset.n_molecules} molecules are too few to split into train/val/test")
    train, val, test = method.function(dataset, seed, fractions)
    for side, rows in zip(SIDES, (train, val, test)):
        wanted = dict(zip(SIDES, fractions))[side] if method.uses_fractions else float(side != "val")
        if wanted > 0 and len(rows) == 0:
            raise DataError(
                f"{dataset.source}: the {name} split left the {side} side empty "
                f"({dataset.n_molecules} molecules, fractions {fractions}); "
                + (_scaffold_cause(dataset) if name == "scaffold" else "use more data or other fractions")
            )
    sides = [np.sort(train), np.sort(val), np.sort(test)]
    details = method.describe(dataset, sides) if method.describe else {}
    leaky = method.leaky
    if not leaky:  # a leak-free method never shares a structure; a published split may
        shared = shared_structures(dataset, sides)
        if any(shared.values()):
            leaky, details = True, {**details, "structures_on_two_sides": shared}
    return Split(name, seed, fractions, *sides, leaky, dataset.fingerprint, method.text_gallery, details)
