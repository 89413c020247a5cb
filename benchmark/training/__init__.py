"""Layer 5: one fit and one trial. Train a bridge on a split's training side, evaluate it on validation or
test, and the single-configuration result (`train`'s JSON).
"""

from benchmark.training.fit import train_bridge
from benchmark.training.results import BenchmarkResult
from benchmark.training.trial import (
    FitScore,
    TrialData,
    TrialResult,
    fit_and_score,
    prepare_trial_data,
    run_trial,
    train_on_split,
)

__all__ = [
    "train_bridge",
    "FitScore",
    "TrialData",
    "TrialResult",
    "fit_and_score",
    "prepare_trial_data",
    "run_trial",
    "train_on_split",
    "BenchmarkResult",
]
