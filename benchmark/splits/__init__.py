"""Layer 2: which pairs train, validate and test. Holdout splits (random by molecule, Bemis-Murcko scaffold,
the leaky pair split, prospective, published) and repeated grouped k-fold plans; all deterministic and checksummed.
"""

from benchmark.splits.folds import Fold, FoldPlan, plan_folds
from benchmark.splits.splitters import SPLITS, Split, check_fractions, make_split, without_leaks

__all__ = ["SPLITS", "Split", "check_fractions", "make_split", "without_leaks", "Fold", "FoldPlan", "plan_folds"]
