"""Repeated grouped k-fold: partitions, grouping, balance, determinism, and repeats that really differ."""

import numpy as np
import pytest

from benchmark.core.errors import ConfigError, DataError
from benchmark.splits.folds import assign_units, plan_folds, unit_labels


def partition(fold_of: np.ndarray) -> set[frozenset]:
    return {frozenset(np.flatnonzero(fold_of == f).tolist()) for f in np.unique(fold_of)}


def test_assign_units_keeps_units_whole_balances_pairs_and_differs_by_seed():
    rng = np.random.default_rng(1)
    sizes = np.concatenate([[40, 25], rng.integers(1, 4, 300)])  # two large units and many small ones
    labels = np.repeat(np.arange(len(sizes)), sizes)
    a, b = assign_units(labels, 5, seed=0), assign_units(labels, 5, seed=1)
    for fold_of in (a, b):
        for unit in np.unique(labels):
            assert len(np.unique(fold_of[labels == unit])) == 1  # a unit never straddles folds
        loads = np.bincount(fold_of, minlength=5)
        assert loads.max() - loads.min() <= 3  # within one small unit
    assert partition(a) != partition(b)
    np.testing.assert_array_equal(a, assign_units(labels, 5, seed=0))
    with pytest.raises(DataError, match="cannot fill 5 folds"):
        assign_units(np.array([0, 0, 1, 1]), 5, seed=0)


@pytest.mark.parametrize("split", ["random", "scaffold"])
def test_folds_partition_the_data_by_unit_with_inner_validation(tiny_dataset, split):
    plan = plan_folds(tiny_dataset, split, folds=3, repeats=2, seed=0)
    units = unit_labels(tiny_dataset, split)
    n = tiny_dataset.n_pairs
    assert len(plan.folds) == 6
    for repeat in range(2):
        tests = [f.split.test for f in plan.folds if f.repeat == repeat]
        assert sorted(np.concatenate(tests).tolist()) == list(range(n))  # each pair tested once per repeat
    for fold in plan.folds:
        s = fold.split
        sides = [set(s.train.tolist()), set(s.val.tolist()), set(s.test.tolist())]
        assert sum(map(len, sides)) == n and set().union(*sides) == set(range(n))
        assert len(s.val) > 0 and len(s.train) > len(s.val)
        unit_sides = [set(units[list(side)].tolist()) for side in sides]
        assert not (unit_sides[0] & unit_sides[1] or unit_sides[0] & unit_sides[2] or unit_sides[1] & unit_sides[2])
        fit = fold.fit_split()
        assert set(fit.train.tolist()) == sides[0] | sides[1] and len(fit.val) == 0
        np.testing.assert_array_equal(fit.test, s.test)


def test_repeats_differ_and_plans_are_deterministic_and_checksummed(tiny_dataset):
    plan = plan_folds(tiny_dataset, "scaffold", folds=3, repeats=3, seed=0)
    by_repeat = [{frozenset(f.split.test.tolist()) for f in plan.folds if f.repeat == r} for r in range(3)]
    assert by_repeat[0] != by_repeat[1] and by_repeat[1] != by_repeat[2] and by_repeat[0] != by_repeat[2]
    again = plan_folds(tiny_dataset, "scaffold", folds=3, repeats=3, seed=0)
    assert again.checksum == plan.checksum and [f.checksum for f in again.folds] == [f.checksum for f in plan.folds]
    assert len({f.checksum for f in plan.folds}) == 9
    other = plan_folds(tiny_dataset, "scaffold", folds=3, repeats=3, seed=7)
    assert other.checksum != plan.checksum
    plan.verify(again.checksum)
    with pytest.raises(DataError, match="checksum"):
        plan.verify(other.checksum)


def test_leaky_split_and_bad_settings_are_refused(tiny_dataset):
    with pytest.raises(ConfigError, match="non-leaky"):
        plan_folds(tiny_dataset, "pair")
    with pytest.raises(ConfigError, match="folds >= 2"):
        plan_folds(tiny_dataset, "random", folds=1)
    with pytest.raises(ConfigError, match="inner_val_fraction"):
        plan_folds(tiny_dataset, "random", inner_val_fraction=0.7)
