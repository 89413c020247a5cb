"""Library entry points: everything the CLI does, callable from Python."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from benchmark.core.device import pin_threads
from benchmark.core.errors import ConfigError
from benchmark.data import datasets
from benchmark.data.cleaning import PairDataset
from benchmark.data.loaders import ColumnMap, load_dataset
from benchmark.encoders.cache import EmbeddingCache
from benchmark.encoders.registry import check_encoder_name
from benchmark.model.config import TrialConfig
from benchmark.splits.splitters import SPLITS, make_split, without_leaks
from benchmark.training.results import BenchmarkResult
from benchmark.training.trial import evaluate, prepare_trial_data, run_trial, text_gallery

log = logging.getLogger(__name__)


def train_and_evaluate(
    config: TrialConfig | None = None,
    *,
    data: str | os.PathLike | PairDataset | None = None,
    dataset: str | None = None,
    split_column: str | None = None,
    columns: ColumnMap | None = None,
    text_templates: dict | None = None,
    max_heavy_atoms: int | None = None,
    split: str = "random",
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    side: str = "test",
    n_boot: int = 1000,
    bootstrap_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    drop_leaked: bool = False,
    threads: int | None = None,
) -> BenchmarkResult:
    """Load (or take) a dataset, split it, encode through the cache, train one bridge, evaluate one side.

    `data` (a file or a loaded dataset) or `dataset` (a registered name: approved, clinical); neither: the
    default dataset. `split_column` names a published split in a bring-your-own file (split 'published').
    `threads`: torch CPU threads (default: the cores this process may use, whatever OMP_NUM_THREADS says).
    `drop_leaked`: on a leaky split, test only the queries whose structure is not in train (or validation); the
    numbers with the leaked queries are reported beside them (`metrics_with_leaked_queries`)."""

    config = config or TrialConfig()
    threads = pin_threads(threads)
    cache = (EmbeddingCache(Path(cache_dir)) if cache_dir else EmbeddingCache()).check_writable()
    if max_heavy_atoms is not None and max_heavy_atoms < 1:
        raise ConfigError(f"--max-heavy-atoms must be at least 1, got {max_heavy_atoms}")
    for spec in (config.mol_encoder, config.text_encoder):  # fail on unknown names before any work
        check_encoder_name(spec.name)
    SPLITS.get(split)
    if dataset is not None:
        datasets.DATASETS.get(dataset)
    if split_column and split != "published":
        raise ConfigError(
            f"a split column gives the published split; got split {split!r} too (drop it or use 'published')"
        )
    if split == "published" and not split_column and not isinstance(data, PairDataset):
        raise ConfigError("the published split needs --split-column NAME (the column holding train / val / test)")
    if isinstance(data, PairDataset):
        pairs = data
    elif data is not None:
        if dataset is not None:
            raise ConfigError("give either --data (a file) or --dataset (a registered dataset), not both")
        pairs = load_dataset(
            data, columns, text_templates=text_templates, split_column=split_column, max_heavy_atoms=max_heavy_atoms
        )
    else:
        path = datasets.resolve_path(dataset or "approved", allow_download=False)
        pairs = load_dataset(
            path, columns, text_templates=text_templates, split_column=split_column, max_heavy_atoms=max_heavy_atoms
        )
    dataset = pairs
    notes = []
    if not dataset.has_groups:
        notes.append("grouped (within-target) retrieval skipped: the dataset has no group column")
        log.warning(notes[-1])
    the_split = make_split(dataset, split, split_seed, fractions)
    if the_split.leaky:
        notes.append(
            f"{split} split is LEAKY (a molecule sits in train and test: {the_split.details or 'pair-level'}); "
            "use only to compare with published numbers"
        )
    if the_split.text_gallery == "dataset":
        details = the_split.details
        notes.append(
            f"prospective: test = {details['test_molecules']} investigational molecules (by phase "
            f"{details['test_molecules_by_phase']}), {details['test_molecules_sharing_a_train_scaffold']} of "
            "them share a Bemis-Murcko scaffold with a training molecule; molecule-to-text ranks against all "
            f"{len(pairs.text_index(config.text_field)[0])} distinct texts of the dataset"
        )
        if "drug" in " ".join(pairs.text_templates.get(config.text_field, ())).lower():
            notes.append(
                f"text field {config.text_field!r} contains the drug's name: a new compound's name can make "
                "its own text retrievable; use text_rich_no_drug for the prospective task"
            )
    leaky_split = the_split
    if drop_leaked and the_split.leaky:
        the_split = without_leaks(dataset, the_split)
        dropped = the_split.details["leaked_pairs_dropped"]
        notes.append(
            f"leaked queries dropped: {dropped['test']} test and {dropped['val']} validation pairs whose structure is "
            f"also on an earlier side; metrics_with_leaked_queries gives the numbers with them"
        )
    trial_data = prepare_trial_data(dataset, config, the_split, cache=cache)
    result = run_trial(
        config,
        trial_data,
        the_split,
        side=side,
        n_boot=n_boot,
        bootstrap_seed=bootstrap_seed,
        device=device,
        keep_models=leaky_split is not the_split,
    )
    with_leaks = None
    if leaky_split is not the_split:  # the same bridge (train is untouched), scored on every query of the side
        with_leaks = _score_with_leaks(result, trial_data, leaky_split, side, n_boot, bootstrap_seed)
    if dataset.has_groups and "text_to_molecule_grouped" not in result.metrics:
        notes.append("grouped retrieval: no target has 3 or more distinct molecules in the evaluated side")
    out = BenchmarkResult(result, trial_data, the_split.summary(), notes, with_leaks, threads)
    for modality, encoder in trial_data.encoders.items():
        if encoder.get("truncated"):
            n = len(trial_data.molecules if modality == "molecule" else trial_data.texts)
            notes.append(
                f"{encoder['name']}: {encoder['truncated']} of {n} {modality} items are longer than it reads; "
                "their tails were cut"
            )
    for name, gallery in out.galleries().items():
        if gallery["tied_items"]:
            notes.append(
                f"{name}: {gallery['tied_items']} of {gallery['size']} gallery {gallery['modality']}s share their "
                f"frozen features with another ({trial_data.encoders.get(gallery['modality'], {}).get('name', '?')}); "
                "queries whose answer is one of them can only tie"
                + (
                    " (try ecfp4-chiral: ECFP4 ignores chirality)"
                    if gallery["modality"] == "molecule" and config.mol_encoder.name == "ecfp4"
                    else ""
                )
            )
    notes += _degenerate_groups(result.metrics)
    return out


def _degenerate_groups(metrics: dict) -> list[str]:
    """A note per grouped mode scored over too few groups for an interval (the metric entries say so too)."""
    out = []
    for mode, by_metric in metrics.items():
        note = next((e.get("note") for e in by_metric.values() if isinstance(e, dict) and e.get("note")), None)
        if note:
            out.append(f"{mode}: {note}; the point estimate alone is reported")
            log.warning(out[-1])
    return out


def _score_with_leaks(result, data, split, side: str, n_boot: int, seed: int) -> dict:
    """The trained bridge's metrics on every query of `side` of the leaky split (leaked ones included)."""
    bridge = result.extras["bridge"]
    mol_x = torch.as_tensor(data.mol_features, device=next(bridge.parameters()).device)
    text_x = torch.as_tensor(data.text_features, device=mol_x.device)
    with torch.no_grad():
        scored = evaluate(
            bridge.embed_all(mol_x, "molecule"),
            bridge.embed_all(text_x, "text"),
            data,
            split.rows(side),
            n_boot=n_boot,
            seed=seed,
            gallery=text_gallery(data, split),
        )
    return scored.metrics
