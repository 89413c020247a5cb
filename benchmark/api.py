"""Library entry points: everything the CLI does, callable from Python."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from benchmark.cache import EmbeddingCache
from benchmark.config import TrialConfig
from benchmark.data.cleaning import PairDataset
from benchmark.data.loaders import ColumnMap, load_dataset
from benchmark.results import BenchmarkResult
from benchmark.encoders import encoder_registry
from benchmark.splits import SPLITS, make_split
from benchmark.trial import prepare_trial_data, run_trial

log = logging.getLogger(__name__)


def train_and_evaluate(
    config: TrialConfig | None = None,
    *,
    data: str | os.PathLike | PairDataset | None = None,
    columns: ColumnMap | None = None,
    text_templates: dict | None = None,
    split: str = "random",
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    side: str = "test",
    n_boot: int = 1000,
    bootstrap_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
) -> BenchmarkResult:
    """Load (or take) a dataset, split it, encode through the cache, train one bridge, evaluate one side."""
    config = config or TrialConfig()
    for spec in (config.mol_encoder, config.text_encoder):  # fail on unknown names before any work
        encoder_registry().get(spec.name)
    SPLITS.get(split)
    dataset = data if isinstance(data, PairDataset) else load_dataset(data, columns, text_templates=text_templates)
    notes = []
    if not dataset.has_groups:
        notes.append("grouped (within-target) retrieval skipped: the dataset has no group column")
        log.warning(notes[-1])
    the_split = make_split(dataset, split, split_seed, fractions)
    if the_split.leaky:
        notes.append("pair split is LEAKY (a molecule can sit in train and test); use only to compare with published numbers")
    trial_data = prepare_trial_data(dataset, config, the_split, cache=EmbeddingCache(Path(cache_dir)) if cache_dir else None)
    result = run_trial(config, trial_data, the_split, side=side, n_boot=n_boot, bootstrap_seed=bootstrap_seed, device=device)
    if dataset.has_groups and "text_to_molecule_grouped" not in result.metrics:
        notes.append("grouped retrieval: no target has 3 or more distinct molecules in the evaluated side")
    return BenchmarkResult(result, trial_data, the_split.summary(), notes)
