"""Layer 2: scoring. Retrieval metrics in both directions (global and within target), bootstrap CIs,
method-comparison statistics over folds, and the evaluation figures logged with a run.
"""

from benchmark.evaluation.bootstrap import bootstrap_mean, paired_bootstrap, resample_statistics
from benchmark.evaluation.comparison import Comparison, compare_systems, mean_ci, metric_bounds
from benchmark.evaluation.metrics import RetrievalRun, evaluate_retrieval, rank_both_directions, summarize

__all__ = [
    "RetrievalRun",
    "evaluate_retrieval",
    "rank_both_directions",
    "summarize",
    "bootstrap_mean",
    "paired_bootstrap",
    "resample_statistics",
    "Comparison",
    "compare_systems",
    "mean_ci",
    "metric_bounds",
]
