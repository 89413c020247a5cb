"""One trial: (configuration, cached embeddings, split) -> metrics, as a pure function.

`prepare_trial_data` does the expensive, shareable part once (load-free: it takes a cleaned
dataset and a split, encodes through the cache). `run_trial` trains a bridge and evaluates
it, and the untrained-heads baseline from the same initial weights, on one side of the
split. Higher layers (Ray Tune, the CLI) call these two and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.device import resolve_device
from benchmark.core.errors import ConfigError, DataError, UnknownNameError
from benchmark.data.cleaning import PairDataset
from benchmark.encoders import build_encoder
from benchmark.encoders.base import encoder_space
from benchmark.encoders.cache import EmbeddingCache
from benchmark.encoders.embed import embed
from benchmark.encoders.graphs import GraphTensors, cached_graphs, graph_config
from benchmark.evaluation.bootstrap import paired_bootstrap
from benchmark.evaluation.metrics import RetrievalRun, evaluate_retrieval, per_query_values
from benchmark.model.config import TrialConfig
from benchmark.splits.splitters import Split
from benchmark.training.fit import build_bridge, train_bridge

if False:  # typing only
    from benchmark.encoders.graphs import MolGraphs  # noqa: F401

log = logging.getLogger(__name__)

#: metric used to compare a trained bridge with its baselines (paired bootstrap)
PAIRED_METRICS = (
    ("text_to_molecule", "recall@1"),
    ("text_to_molecule", "mrr"),
    ("text_to_molecule_grouped", "recall@1"),
)


@dataclass
class TrialData:
    """Frozen embeddings of every molecule and every text of one text field, plus pair indices."""

    mol_features: np.ndarray
    text_features: np.ndarray
    mol_idx: np.ndarray
    text_idx: np.ndarray
    groups: np.ndarray | None
    texts: list[str]
    molecules: list[str]
    shared_space: bool
    encode_seconds: float
    encoded_items: int
    dataset: dict
    encoders: dict
    #: the trainable graph encoder's input (benchmark.graphs): every molecule's graph; mol_features are indices
    graphs: "MolGraphs | None" = None
    #: a frozen molecular view the graph encoder is also aligned to (ACML), one row per molecule
    view_features: np.ndarray | None = None

    def training_inputs(self, device: torch.device) -> dict:
        """What `train_bridge` / `build_bridge` need beyond the feature matrices, on `device`."""

        return {
            "graphs": GraphTensors(self.graphs, device) if self.graphs is not None else None,
            "view_x": torch.as_tensor(self.view_features, device=device) if self.view_features is not None else None,
        }


def prepare_trial_data(
    dataset: PairDataset, config: TrialConfig, split: Split, *, cache: EmbeddingCache | None = None
) -> TrialData:
    """Encode molecules and texts (once, through the cache); fitted encoders see training items only."""
    if config.text_field not in dataset.text_templates:
        raise UnknownNameError("text field", config.text_field, dataset.text_templates)
    mol_encoder = build_encoder(config.mol_encoder.name, **config.mol_encoder.params)
    text_encoder = build_encoder(config.text_encoder.name, **config.text_encoder.params)
    if mol_encoder.modality != "molecule":
        raise ConfigError(
            f"{config.mol_encoder.name!r} encodes {mol_encoder.modality}, not molecules; pick a molecule encoder"
        )
    if text_encoder.modality != "text":
        raise ConfigError(
            f"{config.text_encoder.name!r} encodes {text_encoder.modality}, not text; pick a text encoder"
        )
    texts, text_idx = dataset.text_index(config.text_field)
    mol_idx = dataset.mol_index
    train = split.train
    fit_mols = [dataset.molecules[i] for i in np.unique(mol_idx[train])]
    mols = embed(
        mol_encoder, dataset.molecules, cache=cache, dataset_fingerprint=dataset.fingerprint, fit_items=fit_mols
    )
    graphs = view = None
    graph_seconds = 0.0
    if getattr(mol_encoder, "trainable", False):  # the graph encoder: graphs in, trained with the bridge
        started = time.perf_counter()  # featurisation (or reading the graphs back) is this encoder's encoding
        graphs = cached_graphs(dataset.molecules, cache or EmbeddingCache())
        graph_seconds = time.perf_counter() - started
        align_to = graph_config(config.mol_encoder.params).align_to
        if align_to:
            view_encoder = build_encoder(align_to)
            if view_encoder.modality != "molecule" or getattr(view_encoder, "trainable", False):
                raise ConfigError(f"align_to {align_to!r} must be a frozen molecule encoder (e.g. ecfp4)")
            view = embed(
                view_encoder,
                dataset.molecules,
                cache=cache,
                dataset_fingerprint=dataset.fingerprint,
                fit_items=fit_mols,
            ).matrix
    txts = embed(
        text_encoder,
        texts,
        cache=cache,
        dataset_fingerprint=dataset.fingerprint,
        fit_items=[texts[i] for i in np.unique(text_idx[train])],
    )
    space = encoder_space(mol_encoder)
    shared = space is not None and space == encoder_space(text_encoder) and mols.matrix.shape[1] == txts.matrix.shape[1]
    return TrialData(
        mol_features=mols.matrix,
        text_features=txts.matrix,
        mol_idx=mol_idx,
        text_idx=text_idx,
        groups=dataset.groups,
        texts=texts,
        molecules=dataset.molecules,
        shared_space=shared,
        encode_seconds=mols.seconds + txts.seconds + graph_seconds,
        encoded_items=mols.encoded + txts.encoded,
        dataset=dataset.summary(),
        graphs=graphs,
        view_features=view,
        encoders={
            "molecule": {
                "name": mol_encoder.name,
                "params": mol_encoder.params,
                "key": mols.encoder_key,
                "dim": int(mols.matrix.shape[1]),
                "from_cache": mols.from_cache,
                "truncated": mols.truncated,
                **({"featurise_seconds": round(graph_seconds, 3)} if graphs is not None else {}),
            },
            "text": {
                "name": text_encoder.name,
                "params": text_encoder.params,
                "key": txts.encoder_key,
                "dim": int(txts.matrix.shape[1]),
                "from_cache": txts.from_cache,
                "truncated": txts.truncated,
            },
        },
    )


@dataclass
class Evaluation:
    runs: dict[str, RetrievalRun]
    metrics: dict[str, dict]

    def value(self, direction: str, metric: str) -> float:
        return self.metrics.get(direction, {}).get(metric, {}).get("value", float("nan"))


def text_gallery(data: TrialData, split: Split) -> np.ndarray | None:
    """Every text of the dataset where the split ranks molecule-to-text against it (prospective), else None."""
    return np.arange(len(data.texts)) if split.text_gallery == "dataset" else None


def evaluate(
    mol_emb: torch.Tensor,
    text_emb: torch.Tensor,
    data: TrialData,
    rows: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    min_group_size: int = 3,
    gallery: np.ndarray | None = None,
) -> Evaluation:
    groups = None if data.groups is None else data.groups[rows]
    runs = evaluate_retrieval(
        mol_emb,
        text_emb,
        data.mol_idx[rows],
        data.text_idx[rows],
        groups,
        min_group_size=min_group_size,
        text_gallery=gallery,
    )
    metrics = {name: run.summary(n_boot=n_boot, seed=seed) for name, run in runs.items()}
    return Evaluation(runs, metrics)


def validation_values(runs: dict[str, RetrievalRun]) -> dict[str, float]:
    """Point values per mode and metric ('text_to_molecule/recall@1'), no bootstrap: for search."""
    return {
        f"{name}/{metric}": float(values.mean())
        for name, run in runs.items()
        for metric, values in per_query_values(run.ranks, run.grouped).items()
        if "rank" not in metric
    }


def validate(
    bridge,
    mol_x: torch.Tensor,
    text_x: torch.Tensor,
    data: TrialData,
    rows: np.ndarray,
    gallery: np.ndarray | None = None,
) -> dict[str, float]:
    """Validation point values of a bridge on `rows` (every mode), for per-epoch reports."""
    return validation_values(_retrieval_runs(bridge, mol_x, text_x, data, rows, gallery))


def _retrieval_runs(
    bridge,
    mol_x: torch.Tensor,
    text_x: torch.Tensor,
    data: TrialData,
    rows: np.ndarray,
    gallery: np.ndarray | None = None,
) -> dict[str, RetrievalRun]:
    return evaluate_retrieval(
        bridge.embed_all(mol_x, "molecule"),
        bridge.embed_all(text_x, "text"),
        data.mol_idx[rows],
        data.text_idx[rows],
        None if data.groups is None else data.groups[rows],
        text_gallery=gallery,
    )


#: (epoch, training record, validation values or None) after every epoch
EpochHook = Callable[[int, dict, "dict[str, float] | None"], None]


def train_on_split(
    config: TrialConfig,
    mol_x: torch.Tensor,
    text_x: torch.Tensor,
    data: TrialData,
    split: Split,
    *,
    validate_every: int = 0,
    on_epoch: EpochHook | None = None,
):
    """The one per-epoch training loop of the suite: train on `split.train`; with `validate_every`,
    validation values on `split.val` every that many epochs and at the last (never another side).
    Every caller (single trials, Tune trials, cross-validation fits) goes through here."""
    train = split.train
    groups = None if data.groups is None else data.groups[train]
    check = bool(validate_every) and len(split.val) > 0
    gallery = text_gallery(data, split)

    def hook(epoch: int, bridge, record: dict) -> None:
        due = check and (epoch % validate_every == 0 or epoch == config.optim.epochs)
        on_epoch(epoch, record, validate(bridge, mol_x, text_x, data, split.val, gallery) if due else None)

    outcome = train_bridge(
        config,
        mol_x,
        text_x,
        data.mol_idx[train],
        data.text_idx[train],
        groups,
        on_epoch=hook if on_epoch is not None else None,
        **data.training_inputs(mol_x.device),
    )
    if config.optim.epochs == 0 and on_epoch is not None:
        on_epoch(0, {}, validate(outcome.bridge, mol_x, text_x, data, split.val, gallery) if check else None)
    return outcome


@dataclass
class FitScore:
    """One configuration fitted on a split's training side and scored once on `side` (point values)."""

    values: dict[str, float]  # 'text_to_molecule/recall@1' -> value
    n_queries: dict[str, int]  # per mode
    n_groups: dict[str, int]  # per grouped mode
    train_seconds: float
    eval_seconds: float
    final_loss: float | None
    where: dict[str, str] = field(default_factory=dict)  # cluster.where_am_i() of the process that fitted it


#: fewer distinct molecules or texts than this on the evaluated side make retrieval trivial (Recall@1 of 1.0)
MIN_CANDIDATES = 2


def check_retrievable(data: TrialData, rows: np.ndarray, side: str, gallery: np.ndarray | None = None) -> None:
    """Refuse, before any training, a side where retrieval cannot fail: every text identical, or every molecule."""
    molecules = len(np.unique(data.mol_idx[rows]))
    texts = len(gallery) if gallery is not None else len(np.unique(data.text_idx[rows]))
    if min(molecules, texts) < MIN_CANDIDATES:
        raise DataError(
            f"retrieval on the {side} side is trivial: {molecules} distinct molecule(s) and {texts} distinct text(s) "
            f"among its {len(rows)} pairs, so every query would be answered correctly by construction (Recall@1 "
            "1.0); check the text field and the data (are all texts, or all structures, the same?)"
        )


def fit_and_score(
    config: TrialConfig, data: TrialData, split: Split, *, side: str = "test", device: str | None = None
) -> FitScore:
    """Train on `split.train` and score `side` once: what a cross-validation fold needs (no bootstrap:
    the uncertainty comes from the folds)."""
    check_retrievable(data, split.rows(side), side, text_gallery(data, split))
    dev = resolve_device(device)
    mol_x = torch.as_tensor(data.mol_features, device=dev)
    text_x = torch.as_tensor(data.text_features, device=dev)
    outcome = train_on_split(config, mol_x, text_x, data, split)
    started = time.perf_counter()
    runs = _retrieval_runs(outcome.bridge, mol_x, text_x, data, split.rows(side), text_gallery(data, split))
    values = validation_values(runs)
    return FitScore(
        values,
        {m: int(len(r.ranks)) for m, r in runs.items()},
        {m: int(len(np.unique(r.query_groups))) for m, r in runs.items() if r.grouped},
        outcome.seconds,
        time.perf_counter() - started,
        outcome.history[-1].get("loss") if outcome.history else None,
    )


@dataclass
class TrialResult:
    config: TrialConfig
    side: str
    metrics: dict[str, dict]
    baseline: dict[str, dict]
    cosine_baseline: dict[str, dict] | None
    comparisons: dict[str, dict]
    runs: dict[str, RetrievalRun]
    baseline_runs: dict[str, RetrievalRun]
    history: list[dict]
    train_seconds: float
    eval_seconds: float
    device: str
    extras: dict = field(default_factory=dict)


def run_trial(
    config: TrialConfig,
    data: TrialData,
    split: Split,
    *,
    side: str = "val",
    n_boot: int = 1000,
    bootstrap_seed: int = 0,
    min_group_size: int = 3,
    device: str | None = None,
    eval_every: int = 0,
    reporter: Callable[[dict], None] | None = None,
    keep_models: bool = False,
) -> TrialResult:
    """Train on split.train, evaluate on `side` ('val' for selection, 'test' once per final config).

    With `eval_every` > 0 and a `reporter`, the validation text->molecule recall@1 and MRR are
    reported every `eval_every` epochs (the hook for early stopping), never the test side.
    """
    dev = resolve_device(device)
    rows = split.rows(side)
    check_retrievable(data, rows, side, text_gallery(data, split))
    mol_x = torch.as_tensor(data.mol_features, device=dev)
    text_x = torch.as_tensor(data.text_features, device=dev)

    on_epoch = None
    if reporter is not None:

        def on_epoch(epoch: int, record: dict, values: dict | None) -> None:
            if epoch == 0:  # nothing was trained
                return
            payload = dict(record)
            if values is not None:
                payload.update(
                    {"val_recall@1": values["text_to_molecule/recall@1"], "val_mrr": values["text_to_molecule/mrr"]}
                )
            reporter(payload)

    outcome = train_on_split(config, mol_x, text_x, data, split, validate_every=eval_every, on_epoch=on_epoch)
    started = time.perf_counter()
    bridge = outcome.bridge
    gallery = text_gallery(data, split)

    def score(mol_embeddings: torch.Tensor, text_embeddings: torch.Tensor):
        """Every retrieval mode on the evaluated rows, all from the same bootstrap resamples."""
        return evaluate(
            mol_embeddings,
            text_embeddings,
            data,
            rows,
            n_boot=n_boot,
            seed=bootstrap_seed,
            min_group_size=min_group_size,
            gallery=gallery,
        )

    trained = score(bridge.embed_all(mol_x, "molecule"), bridge.embed_all(text_x, "text"))
    inputs = data.training_inputs(dev)
    untrained_bridge = build_bridge(
        config,
        mol_x.shape[1],
        text_x.shape[1],
        graphs=inputs["graphs"],
        view_dim=None if inputs["view_x"] is None else inputs["view_x"].shape[1],
    ).to(dev)
    untrained = score(untrained_bridge.embed_all(mol_x, "molecule"), untrained_bridge.embed_all(text_x, "text"))
    cosine = score(F.normalize(mol_x, dim=-1), F.normalize(text_x, dim=-1)) if data.shared_space else None
    comparisons = {}
    for direction, metric in PAIRED_METRICS:
        if direction not in trained.runs:
            continue
        a, b = trained.runs[direction], untrained.runs[direction]
        values = (lambda r: r.ranks <= 1) if metric == "recall@1" else (lambda r: 1.0 / r.ranks)
        comparisons[f"{direction}/{metric}"] = paired_bootstrap(
            values(a),
            values(b),
            groups=a.query_groups if a.grouped else None,
            n_boot=n_boot,
            seed=bootstrap_seed,
        ).as_dict()
    eval_seconds = time.perf_counter() - started
    return TrialResult(
        config=config,
        side=side,
        metrics=trained.metrics,
        baseline=untrained.metrics,
        cosine_baseline=None if cosine is None else cosine.metrics,
        comparisons=comparisons,
        runs=trained.runs,
        baseline_runs=untrained.runs,
        history=outcome.history,
        train_seconds=outcome.seconds,
        eval_seconds=eval_seconds,
        device=str(dev),
        extras={"bridge": bridge, "untrained_bridge": untrained_bridge} if keep_models else {},
    )
