"""Splits on the real snapshot: disjointness, determinism, checksums, and the leaky pair split."""

import numpy as np
import pytest

from benchmark.core.errors import ConfigError, DataError, UnknownNameError
from benchmark.data.chem import murcko_scaffold
from benchmark.splits.splitters import make_split


def side_keys(dataset, split, side, column="structure_key"):
    return set(dataset.pairs.iloc[split.rows(side)][column])


@pytest.mark.parametrize("name", ["random", "scaffold", "pair"])
def test_split_covers_every_pair_once(snapshot, name):
    split = make_split(snapshot, name, seed=0)
    rows = np.concatenate([split.train, split.val, split.test])
    assert len(rows) == snapshot.n_pairs and len(np.unique(rows)) == snapshot.n_pairs
    assert 0.7 < len(split.train) / snapshot.n_pairs < 0.9
    assert len(split.val) > 100 and len(split.test) > 100


def test_random_split_is_molecule_disjoint(snapshot):
    split = make_split(snapshot, "random", seed=1)
    train, val, test = (side_keys(snapshot, split, s) for s in ("train", "val", "test"))
    assert not (train & test) and not (train & val) and not (val & test)
    assert not split.leaky


def test_scaffold_split_is_scaffold_disjoint(snapshot):
    split = make_split(snapshot, "scaffold", seed=0)
    scaffolds = {
        side: {murcko_scaffold(k) for k in side_keys(snapshot, split, side)} for side in ("train", "val", "test")
    }
    assert not (scaffolds["train"] & scaffolds["test"])
    assert not (scaffolds["train"] & scaffolds["val"]) and not (scaffolds["val"] & scaffolds["test"])
    assert len(scaffolds["test"]) > 50


def test_pair_split_is_labelled_leaky_and_shares_molecules(snapshot):
    split = make_split(snapshot, "pair", seed=0)
    assert split.leaky and split.summary()["leaky"]
    assert side_keys(snapshot, split, "train") & side_keys(snapshot, split, "test")


def test_splits_are_deterministic_and_checksummed(snapshot):
    a, b = make_split(snapshot, "scaffold", seed=3), make_split(snapshot, "scaffold", seed=3)
    assert a.checksum == b.checksum and np.array_equal(a.test, b.test)
    c = make_split(snapshot, "scaffold", seed=4)
    assert c.checksum != a.checksum
    assert make_split(snapshot, "random", seed=3).checksum != a.checksum


def test_bad_fractions_and_names(snapshot, tiny_dataset):
    with pytest.raises(ConfigError, match="summing to 1"):
        make_split(snapshot, "random", fractions=(0.8, 0.1, 0.2))
    with pytest.raises(ConfigError, match="non-empty train and test"):
        make_split(snapshot, "random", fractions=(1.0, 0.0, 0.0))
    with pytest.raises(UnknownNameError, match="Did you mean 'scaffold'"):
        make_split(snapshot, "scafold")


def test_too_small_dataset_is_refused(tmp_path):
    import pandas as pd

    from benchmark.data import load_dataset

    path = tmp_path / "small.csv"
    pd.DataFrame({"smiles": ["CCO", "CCN", "CCC"], "text": ["a", "b", "c"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="too few to split"):
        make_split(load_dataset(path), "random")
