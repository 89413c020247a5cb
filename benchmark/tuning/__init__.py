"""Layer 6: search. Search spaces (YAML to an Optuna define-by-run function), the Ray Tune trainable, one
seeded Optuna study per fold, trials logged to MLflow as they end, and the progress board.

Ray pickles `PerFoldSearch` and `TrialPayload` into saved Tune state; they are importable from here.
"""

from benchmark.tuning.callback import TrialCallback
from benchmark.tuning.outcome import StudyOutcome, study_outcome
from benchmark.tuning.progress import StudyBoard, make_progress
from benchmark.tuning.search import BudgetSearch, PerFoldSearch, ResumableOptunaSearch, StudySettings
from benchmark.tuning.space import SearchSpace, available_search_spaces, load_search_space
from benchmark.tuning.trainable import OBJECTIVE, TrialPayload, bridge_trainable, select_best, tuning_trial
from benchmark.tuning.tuner import make_tuner

__all__ = [
    "SearchSpace",
    "available_search_spaces",
    "load_search_space",
    "OBJECTIVE",
    "TrialPayload",
    "bridge_trainable",
    "select_best",
    "tuning_trial",
    "BudgetSearch",
    "PerFoldSearch",
    "ResumableOptunaSearch",
    "StudySettings",
    "make_tuner",
    "TrialCallback",
    "StudyOutcome",
    "study_outcome",
    "StudyBoard",
    "make_progress",
]
