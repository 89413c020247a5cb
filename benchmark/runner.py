"""`python -m benchmark run`: every task of a suite tuned on validation data, tested once, logged.

For each group of tasks that share a dataset and split: embeddings are computed once (cache),
a Ray Tune study with Optuna search trains bridges and reports validation metrics, each task
picks its best trial by its own primary metric (validation only), the chosen configuration is
retrained with the task's final seeds and evaluated once on the test side, and everything goes
to MLflow (parent run per task, child runs per trial and final seed) and to `results.json`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmark.cache import EmbeddingCache, atomic_write_bytes
from benchmark.config import TrialConfig, flatten
from benchmark.data.chembl import download_to_cache
from benchmark.data.loaders import DATA_ENV, find_default_data, load_dataset
from benchmark.errors import BenchmarkError, ConfigError, DownloadError
from benchmark.finals import FinalOutcome, per_query_frame, run_finals
from benchmark.search_space import load_search_space
from benchmark.splits import make_split
from benchmark.tasks import SuiteSpec, TaskSpec, get_suite, get_task
from benchmark.tracking import Tracker, check_reachable, default_tracking_uri, flatten_metrics, git_commit, parquet_bytes
from benchmark.trial import prepare_trial_data

log = logging.getLogger(__name__)
STATE_FILE = "run_state.json"


def resolve_data(data: str | None, *, allow_download: bool = True) -> Path:
    """--data, else $BENCHMARK_DATA, else a (cached) ChEMBL download where reachable, else the snapshot."""
    import os

    if data:
        return Path(data)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    if allow_download:
        try:
            return download_to_cache(retries=2, base_delay=1.0)
        except DownloadError as exc:
            log.info("ChEMBL download unavailable (%s...); using the offline snapshot", str(exc)[:90])
    return find_default_data()


def short_config(cfg: TrialConfig) -> str:
    loss = cfg.loss
    parts = [f"{cfg.mol_encoder.name}+{cfg.text_encoder.name}", cfg.bridge.head, f"T={loss.temperature:.3g}"]
    if loss.margin:
        parts.append(f"m={loss.margin:.2g}")
    if loss.hard_negative_beta or loss.same_target_weight != 1:
        parts.append(f"hn={loss.hard_negative_beta:.2g}/{loss.same_target_weight:.2g}")
    if loss.u2u_weight or loss.u2c_weight:
        parts.append(f"so={loss.u2u_weight:.2g}/{loss.u2c_weight:.2g}")
    parts.append(f"lr={cfg.optim.lr:.2g} ep={cfg.optim.epochs}")
    return " ".join(parts)


@dataclass
class RunOptions:
    suite: str = "default"
    data: str | None = None
    tracking_uri: str | None = None
    output: str = "results"
    resume: bool = False
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    num_samples: int | None = None
    time_budget_s: float | None = None
    max_concurrent: int | None = None
    search_space: str | None = None
    asha: bool | None = None
    seed: int = 0
    cache_dir: str | None = None
    allow_download: bool = True
    max_failures: int = 0


def _load_state(output: Path, options: RunOptions) -> dict:
    path = output / STATE_FILE
    if options.resume:
        if not path.exists():
            raise BenchmarkError(f"nothing to resume in {output}: no {STATE_FILE}; run without --resume first")
        state = json.loads(path.read_text())
        if state["suite"] != options.suite:
            raise ConfigError(f"{output} holds a run of suite {state['suite']!r}, not {options.suite!r}")
        return state
    if path.exists():
        log.info("starting a new run in %s (the previous state is replaced; use --resume to continue it)", output)
    state = {"run_uid": uuid.uuid4().hex[:12], "suite": options.suite, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_bytes(path, json.dumps(state, indent=2).encode())
    return state


def _parent_run(tracker: Tracker, task: TaskSpec, state: dict, suite: SuiteSpec, dataset, split, space, encoders: str) -> str:
    existing = tracker.find_run(run_uid=state["run_uid"], task=task.name, stage="task")
    if existing:
        return existing
    from benchmark import __version__

    run_id = tracker.start_run(task.name, {
        "run_uid": state["run_uid"], "stage": "task", "task": task.name, "suite": suite.name,
        "split": task.split.name, "split_checksum": split.checksum, "leaky": task.leaky, "retrieval": task.retrieval,
        "primary_metric": task.primary_key, "dataset_fingerprint": dataset.fingerprint, "search_space": space.name,
        "encoders": encoders, "text_field": task.dataset.text_field,
        "package_version": __version__, "git_commit": git_commit(), "mlflow.note.content": task.description,
    })
    params = {f"task.{k}": v for k, v in flatten(task.model_dump()).items()}
    tracker.log(run_id, params=params)
    return run_id


def _select(grid, task: TaskSpec) -> tuple[dict, str, float] | None:
    """Best successful trial by the task's primary metric on validation data."""
    candidates = []
    for result in grid:
        if result.error is not None or not result.metrics:
            continue
        value = result.metrics.get(f"val/{task.primary_key}")
        if value is None or value != value:
            continue
        candidates.append((-value, -result.metrics.get("objective", 0.0), result.metrics["trial_id"], result.config))
    if not candidates:
        return None
    best = sorted(candidates, key=lambda c: c[:3])[0]
    return best[3], best[2], -best[0]


def _final_json(task: TaskSpec, outcome: FinalOutcome, data, split, dataset) -> dict:
    modes = {task.mode(d) for d in task.directions}
    pick = lambda metrics: {m: v for m, v in metrics.items() if m in modes}  # noqa: E731
    return {
        "dataset": {**dataset.summary(), "n_texts": len(data.texts)},
        "split": {**split.summary(), "evaluated": "test"},
        "config": outcome.config.model_dump(),
        "config_digest": outcome.config.digest(),
        "encoders": data.encoders,
        "seeds": outcome.seeds,
        "timing": {"encode_seconds": round(data.encode_seconds, 3), "encoded_items": data.encoded_items,
                   "train_seconds": round(outcome.train_seconds, 3), "eval_seconds": round(outcome.eval_seconds, 3)},
        "metrics": pick(outcome.metrics),
        "baseline": pick(outcome.baseline),
        "comparisons": {k: v for k, v in outcome.comparisons.items() if k.split("/")[0] in modes},
        "seed_values": pick(outcome.seed_values),
    }


def _log_finals(tracker: Tracker, parent: str, task: TaskSpec, outcome: FinalOutcome, final: dict, data, split,
                state: dict) -> None:
    from benchmark import plots

    for seed, result in zip(outcome.seeds, outcome.per_seed, strict=True):
        if tracker.find_run(run_uid=state["run_uid"], task=task.name, stage="final", seed=str(seed)):
            continue
        child = tracker.start_run(f"final-seed-{seed}", {
            "run_uid": state["run_uid"], "task": task.name, "stage": "final", "seed": seed,
            "encoders": f"{outcome.config.mol_encoder.name}+{outcome.config.text_encoder.name}"}, parent_id=parent)
        tracker.log(child, params=outcome.config.model_copy(update={"seed": seed}).flat(),
                    metrics={**flatten_metrics(result.metrics, "test"), **flatten_metrics(result.baseline, "baseline.test")},
                    steps={"train.loss": [(h["epoch"], h["loss"]) for h in result.history]})
        tracker.end(child)
    metrics = {**flatten_metrics(final["metrics"], "test"), **flatten_metrics(final["baseline"], "baseline.test")}
    for key, diff in final["comparisons"].items():
        base = f"compare.{key.replace('/', '.').replace('@', '_at_')}"
        metrics.update({f"{base}.difference": diff["difference"], f"{base}.ci_low": diff["ci_low"],
                        f"{base}.ci_high": diff["ci_high"], f"{base}.p_value": diff["p_value"]})
    tracker.log(parent, params={f"chosen.{k}": v for k, v in outcome.config.flat().items() if k != "seed"},
                metrics=metrics, tags={"final_seeds": ",".join(map(str, outcome.seeds)),
                                       "chosen_encoders": f"{outcome.config.mol_encoder.name}+{outcome.config.text_encoder.name}",
                                       "chosen_config": short_config(outcome.config)})
    tracker.log_text(parent, yaml.safe_dump(outcome.config.model_dump(), sort_keys=True), "config.yaml")
    tracker.log_text(parent, json.dumps(final, indent=2), "final.json")
    tracker.log_bytes(parent, parquet_bytes(per_query_frame(outcome, data)), "per_query_ranks.parquet")
    first = outcome.per_seed[0]
    if "bridge" in first.extras:
        rows = split.test
        before = plots.pair_similarities(first.extras["untrained_bridge"], data, rows)
        after = plots.pair_similarities(first.extras["bridge"], data, rows)
        tracker.log_bytes(parent, plots.cosine_heatmaps(before, after, f"{task.name}: first {len(after)} test pairs"),
                          "cosine_heatmap.png")
    curves = {f"{mode} (seed {outcome.seeds[0]})": run.recall_curve() for mode, run in first.runs.items()
              if mode.startswith("text_to_molecule")}
    tracker.log_bytes(parent, plots.recall_curves(curves, f"{task.name}: Recall@k"), "recall_at_k.png")


def format_summary(results: dict) -> str:
    lines = [f"{'task':<26}{'primary metric':<34}{'mean':>7}  {'95% CI':<17}{'n':>8}  chosen configuration", "-" * 120]
    for name, entry in results["tasks"].items():
        if "final" not in entry:
            lines.append(f"{name:<26}{'(no successful trial: ' + entry.get('error', '?') + ')'}")
            continue
        key = entry["primary_metric"]
        mode, metric = key.split("/")
        value = entry["final"]["metrics"][mode][metric]
        n = f"{value['n']}" + (f"/{value['n_groups']}g" if "n_groups" in value else "")
        leak = " LEAKY" if entry["leaky"] else ""
        lines.append(f"{name + leak:<26}{key:<34}{value['value']:>7.3f}  [{value['ci_low']:.3f}, {value['ci_high']:.3f}]"
                     f"{n:>9}  {entry['chosen']['short']}")
    return "\n".join(lines)


def run_suite(options: RunOptions, progress: Callable[[str], None] | None = None) -> dict:
    from ray import tune

    from benchmark.tuning import (StudySettings, TrialCallback, TrialPayload, bridge_trainable, check_resources,
                                  init_ray, make_tuner, say)

    progress = progress or say

    suite = get_suite(options.suite)
    tasks = [get_task(name) for name in suite.tasks]
    space = load_search_space(options.search_space or suite.search_space)
    tracking_uri = options.tracking_uri or default_tracking_uri()
    check_reachable(tracking_uri)
    output = Path(options.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    state = _load_state(output, options)
    tracker = Tracker(tracking_uri, f"benchmark-{suite.name}")
    tracker.experiment_id  # noqa: B018 - fail now, not after training, if the store is unusable
    cache = EmbeddingCache(options.cache_dir) if options.cache_dir else EmbeddingCache()

    init_ray(options.address)
    check_resources(options.cpus_per_trial, options.gpus_per_trial)

    groups: dict[str, list[TaskSpec]] = {}
    for task in tasks:
        groups.setdefault(task.split_key(), []).append(task)
    mol_choices, text_choices = space.encoder_choices()
    results = {"suite": suite.name, "run_uid": state["run_uid"], "tracking_uri": tracking_uri,
               "experiment": tracker.experiment, "search_space": space.name, "tasks": {}}
    data_path = None
    started = time.perf_counter()
    for key, group in groups.items():
        first = group[0]
        if first.dataset.source == "file":
            path = Path(first.dataset.path)
        else:
            data_path = data_path or resolve_data(options.data, allow_download=options.allow_download)
            path = data_path
        dataset = load_dataset(path)
        split = make_split(dataset, first.split.name, first.split.seed, first.split.fractions)
        progress(f"[{', '.join(t.name for t in group)}] {split.name} split {split.checksum}: train {len(split.train)}, "
                 f"val {len(split.val)}, test {len(split.test)} pairs{' (LEAKY)' if split.leaky else ''}")
        datas = {}
        for mol in mol_choices:
            for text in text_choices:
                cfg = TrialConfig(mol_encoder=mol, text_encoder=text, text_field=first.dataset.text_field)
                datas[TrialPayload.key(cfg)] = prepare_trial_data(dataset, cfg, split, cache=cache)
        encoded = sum(d.encoded_items for d in datas.values())
        progress(f"  embeddings: {len(datas)} encoder pair(s), {encoded} items encoded "
                 f"({sum(d.encode_seconds for d in datas.values()):.1f}s; the rest from the cache)")
        encoders = ", ".join(f"{m['name']}+{t['name']}" for m in mol_choices for t in text_choices)
        parents = {t.name: _parent_run(tracker, t, state, suite, dataset, split, space, encoders) for t in group}
        payload = TrialPayload(space, datas, split, [t.primary_key for t in group], suite.eval_every,
                               threads=int(max(1, options.cpus_per_trial)))
        max_epochs = max(space.trial_config({}).optim.epochs, 1)
        settings = StudySettings(
            name=f"{suite.name}-{split.name}-{key}", storage_path=output / "ray",
            num_samples=options.num_samples or suite.num_samples, time_budget_s=options.time_budget_s or suite.time_budget_s,
            max_concurrent=options.max_concurrent or suite.max_concurrent, cpus_per_trial=options.cpus_per_trial,
            gpus_per_trial=options.gpus_per_trial, asha=suite.asha if options.asha is None else options.asha,
            max_reports=-(-max_epochs // suite.eval_every), seed=options.seed,
            optuna_storage=f"sqlite:///{output / 'optuna.db'}", max_failures=options.max_failures,
        )
        callback = TrialCallback(tracker, parents, {t.name: t.primary_key for t in group}, state["run_uid"], space, progress)
        tuner = make_tuner(tune.with_parameters(bridge_trainable, payload=payload), settings, space,
                           callbacks=[callback], resume=options.resume)
        try:
            grid = tuner.fit()
        finally:
            callback.flush()  # trial runs still queued for MLflow
        n_failed = sum(1 for r in grid if r.error is not None)
        finals: dict[str, FinalOutcome] = {}
        for task in group:
            entry = {"description": task.description, "primary_metric": task.primary_key, "leaky": task.leaky,
                     "trials": {"finished": len(grid) - n_failed, "failed": n_failed}}
            chosen = _select(grid, task)
            if chosen is None:
                entry["error"] = "every trial failed"
                tracker.end(parents[task.name], "FAILED")
                results["tasks"][task.name] = entry
                continue
            config_dict, trial_id, val_value = chosen
            cfg = space.trial_config(config_dict)
            digest = f"{cfg.digest()}-{','.join(map(str, task.final_seeds))}"
            if digest not in finals:
                data = datas[TrialPayload.key(cfg)]
                progress(f"  final: {task.name} <- trial {trial_id} (val {task.primary_key} {val_value:.3f}); "
                         f"seeds {list(task.final_seeds)} on the test side")
                finals[digest] = run_finals(cfg, data, split, list(task.final_seeds), n_boot=task.bootstrap.n_boot,
                                            bootstrap_seed=task.bootstrap.seed)
            else:
                progress(f"  final: {task.name} <- trial {trial_id} (val {task.primary_key} {val_value:.3f}); "
                         "same configuration and seeds as above: trained once, evaluated in this task's mode")
            outcome = finals[digest]
            data = datas[TrialPayload.key(cfg)]
            final = _final_json(task, outcome, data, split, dataset)
            entry["chosen"] = {"trial_id": trial_id, "val_value": val_value, "short": short_config(cfg),
                               "config": cfg.model_dump()}
            entry["final"] = final
            _log_finals(tracker, parents[task.name], task, outcome, final, data, split, state)
            tracker.end(parents[task.name])
            results["tasks"][task.name] = entry
    results["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_bytes(output / "results.json", json.dumps(results, indent=2).encode())
    return results
