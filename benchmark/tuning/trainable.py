"""One tuning trial as Ray Tune runs it: the payload shipped to workers, the trainable, the objective.

A trial trains a bridge on its split (or fold) and reports validation metrics only; selection reads them
back from the result grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from benchmark.cluster.ray_cluster import where_am_i
from benchmark.core.device import resolve_device
from benchmark.model.config import TrialConfig
from benchmark.splits.splitters import Split
from benchmark.training.trial import TrialData, train_on_split
from benchmark.tuning.space import SearchSpace

OBJECTIVE = "objective"


#: key of a trial's config naming its outer fold (repeated cross-validation)
FOLD_KEY = "fold"


def split_fold(config: dict) -> tuple[str | None, dict]:
    """(fold name or None, the sampled configuration without it)."""
    return config.get(FOLD_KEY), {k: v for k, v in config.items() if k != FOLD_KEY}


def trial_device() -> str:
    """The GPU Ray assigned to this trial (CUDA_VISIBLE_DEVICES is set by Ray), else the CPU."""
    import ray  # ray: heavy, imported only when a study or cluster is used

    if not ray.is_initialized():  # a trial run without Ray (perf's bare trials) must not start one
        return str(resolve_device("auto"))
    try:
        gpu_ids = ray.get_gpu_ids()
    except Exception:
        gpu_ids = []
    return str(resolve_device("auto")) if gpu_ids else "cpu"


@dataclass
class TrialPayload:
    """What every trial of one study needs; shipped once through the object store.

    Holdout: one `split`. Cross-validation: `folds` maps fold names to their splits and `data` is
    keyed per fold (entries may share one TrialData object: pickling stores it once).
    """

    space: SearchSpace
    data: dict[str, TrialData]  # keyed by TrialPayload.key(cfg, fold)
    split: Split | None
    objective_keys: list[str]
    eval_every: int
    threads: int = 1
    folds: dict[str, Split] | None = None

    @staticmethod
    def key(cfg: TrialConfig, fold: str | None = None) -> str:
        align = cfg.mol_encoder.params.get("align_to")  # the graph encoder's frozen view changes the data
        pair = f"{cfg.mol_encoder.name}{'@' + align if align else ''}|{cfg.text_encoder.name}"
        return f"{fold}|{pair}" if fold else pair

    def resolve(self, config: dict) -> tuple[TrialConfig, TrialData, Split]:
        fold, sampled = split_fold(config)
        cfg = self.space.trial_config(sampled)
        split = self.split if fold is None else self.folds[fold]
        return cfg, self.data[self.key(cfg, fold)], split


def select_best(grid, metric: str, fold: str | None = None, *, exclude=()) -> tuple[dict, str, float] | None:
    """Best successful trial of a Tune result grid by a reported `metric` ('val/<mode>/<metric>' or the objective),
    among the trials of `fold` when given: (config, trial id, value). Ties: higher objective, then trial id.
    Trials in `exclude` (interrupted ones, whose last report is not their end) are never chosen."""
    candidates = []
    for result in grid:
        if result.error is not None or not result.metrics or result.metrics.get("trial_id") in exclude:
            continue
        if fold is not None and (result.config or {}).get(FOLD_KEY) != fold:
            continue
        value = result.metrics.get(metric)
        if value is None or value != value:
            continue
        candidates.append((-value, -result.metrics.get(OBJECTIVE, 0.0), result.metrics["trial_id"], result.config))
    if not candidates:
        return None
    best = sorted(candidates, key=lambda c: c[:3])[0]
    return best[3], best[2], -best[0]


def stopped_early(grid, space) -> set[str]:
    """Trials whose last report came before their configured epochs: successive halving stopped them at a rung
    (their last report is not their end, so they are never selected)."""
    out = set()
    for result in grid:
        metrics = result.metrics or {}
        if result.error is None and "epoch" in metrics:
            if metrics["epoch"] < space.trial_config(split_fold(result.config or {})[1]).optim.epochs:
                out.add(metrics["trial_id"])
    return out


def trial_seconds(grid) -> float:
    """Seconds spent inside the trials of a Tune result grid (Tune's own time_total_s)."""
    return float(sum((r.metrics or {}).get("time_total_s", 0.0) or 0.0 for r in grid))


def objective_of(values: dict[str, float], keys: list[str]) -> float:
    present = [values[k] for k in keys if k in values]
    return float(np.mean(present)) if present else values.get("text_to_molecule/mrr", 0.0)


#: internal-KV namespace where a trial notes that its own code raised
RAISED_NAMESPACE = "benchmark-trial-raised"


def bridge_trainable(config: dict, payload: TrialPayload) -> None:
    """One Tune trial: train, validate every `eval_every` epochs, report (validation only), saying where it ran.

    Tune retries failed trials (`max_failures`, default 2) so that a lost node or a killed worker costs a
    restart, not the trial. A trial whose own code raised notes it in the cluster's KV store first, and its
    retries fail at once with that error instead of training again.
    """
    import ray  # ray: heavy, imported only when a study or cluster is used
    from ray import tune  # ray: heavy, imported only when a study or cluster is used
    from ray.experimental import internal_kv  # ray: heavy, imported only when a study or cluster is used

    key = f"{ray.get_runtime_context().get_job_id()}/{tune.get_context().get_trial_id()}"
    earlier = internal_kv._internal_kv_get(key, namespace=RAISED_NAMESPACE)
    if earlier:
        raise RuntimeError(
            f"not trained again: this trial's own code raised on an earlier attempt "
            f"({earlier.decode()}); retries are for lost nodes and killed workers"
        )
    where = where_am_i()
    try:
        tuning_trial(config, payload, lambda metrics: tune.report({**metrics, **where}))
    except Exception as exc:
        internal_kv._internal_kv_put(key, f"{type(exc).__name__}: {exc}"[:500], namespace=RAISED_NAMESPACE)
        raise


def tuning_trial(config: dict, payload: TrialPayload, report: Callable[[dict], None]) -> None:
    """The work of one trial, without Ray (`perf` times it bare to measure Tune's overhead)."""
    torch.set_num_threads(max(1, payload.threads))
    cfg, data, split = payload.resolve(config)
    device = torch.device(trial_device())
    mol_x = torch.as_tensor(data.mol_features, device=device)
    text_x = torch.as_tensor(data.text_features, device=device)
    pending: list[float] = []

    def on_epoch(epoch: int, record: dict, values: dict | None) -> None:
        if epoch:
            pending.append(record.get("loss", float("nan")))
        if values is not None:
            report(
                {
                    "epoch": epoch,
                    "loss": record.get("loss"),
                    "loss_history": list(pending),
                    "device": str(device),
                    "threads": torch.get_num_threads(),
                    **{f"val/{k}": v for k, v in values.items()},
                    OBJECTIVE: objective_of(values, payload.objective_keys),
                }
            )
            pending.clear()

    train_on_split(cfg, mol_x, text_x, data, split, validate_every=payload.eval_every, on_epoch=on_epoch)
