"""Final evaluation of a chosen configuration: retrain with several seeds, test once per seed.

Per-query values (hit at k, reciprocal rank, rank) are averaged over seeds first, then
bootstrapped over queries (whole targets for grouped modes): the point estimate is the seed
mean, the CI covers query sampling. The untrained-heads baseline goes through the same
protocol (same seeds, same initial weights) and is compared by paired bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.evaluation.bootstrap import paired_bootstrap
from benchmark.evaluation.metrics import RetrievalRun, per_query_values, summarize
from benchmark.model.config import TrialConfig
from benchmark.splits.splitters import Split
from benchmark.training.results import query_frame
from benchmark.training.trial import TrialData, TrialResult, run_trial


@dataclass
class FinalOutcome:
    config: TrialConfig
    seeds: list[int]
    per_seed: list[TrialResult]
    metrics: dict[str, dict] = field(default_factory=dict)
    baseline: dict[str, dict] = field(default_factory=dict)
    comparisons: dict[str, dict] = field(default_factory=dict)
    seed_values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def train_seconds(self) -> float:
        return float(sum(r.train_seconds for r in self.per_seed))

    @property
    def eval_seconds(self) -> float:
        return float(sum(r.eval_seconds for r in self.per_seed))


def _seed_mean(runs: list[RetrievalRun]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    first = runs[0]
    for other in runs[1:]:
        if not np.array_equal(other.query_items, first.query_items):
            raise RuntimeError("final runs of different seeds evaluated different queries")
    stacked = [per_query_values(r.ranks, r.grouped) for r in runs]
    return {
        k: np.mean([s[k] for s in stacked], axis=0) for k in stacked[0]
    }, first.query_groups if first.grouped else None


def run_finals(
    config: TrialConfig,
    data: TrialData,
    split: Split,
    seeds: list[int],
    *,
    n_boot: int = 1000,
    bootstrap_seed: int = 0,
    device: str | None = None,
    keep_first_models: bool = True,
) -> FinalOutcome:
    per_seed = [
        run_trial(
            config.model_copy(update={"seed": s}),
            data,
            split,
            side="test",
            n_boot=n_boot,
            bootstrap_seed=bootstrap_seed,
            device=device,
            keep_models=keep_first_models and i == 0,
        )
        for i, s in enumerate(seeds)
    ]
    outcome = FinalOutcome(config, list(seeds), per_seed)
    for mode in per_seed[0].runs:
        trained, groups = _seed_mean([r.runs[mode] for r in per_seed])
        untrained, _ = _seed_mean([r.baseline_runs[mode] for r in per_seed])
        outcome.metrics[mode] = summarize(trained, groups, n_boot=n_boot, seed=bootstrap_seed)
        outcome.baseline[mode] = summarize(untrained, groups, n_boot=n_boot, seed=bootstrap_seed)
        for metric in ("recall@1", "mrr"):
            outcome.comparisons[f"{mode}/{metric}"] = paired_bootstrap(
                trained[metric], untrained[metric], groups=groups, n_boot=n_boot, seed=bootstrap_seed
            ).as_dict()
        outcome.seed_values[mode] = {m: [r.metrics[mode][m]["value"] for r in per_seed] for m in outcome.metrics[mode]}
    return outcome


def per_query_frame(outcome: FinalOutcome, data: TrialData) -> pd.DataFrame:
    """Ranks of every query, system and seed (bridge and untrained heads)."""

    frames = [query_frame(result, data) for result in outcome.per_seed]
    for seed, frame in zip(outcome.seeds, frames, strict=True):
        frame.insert(0, "seed", seed)
    return pd.concat(frames, ignore_index=True)
