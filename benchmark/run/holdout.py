"""The holdout protocol (the paper's): one Tune study per split, best trial per task on validation,
retrained with the final seeds and tested once, logged to MLflow.
"""

from __future__ import annotations

import json
import logging
import time

import yaml

from benchmark.core.names import (
    STAGE_FINAL,
    TAG_BEST,
    TAG_CHOSEN_CONFIG,
    TAG_ENCODERS,
    TAG_FINAL_SEEDS,
    TAG_INTERVAL_NOTE,
    TAG_NOTE,
    TAG_RANKING,
    TAG_RUN_UID,
    TAG_SPLIT_CHECKSUM,
    TAG_STAGE,
    TAG_TASK,
    display_metrics,
)
from benchmark.evaluation import plots
from benchmark.model.config import TrialConfig, short_config
from benchmark.run.context import RunContext
from benchmark.run.finals import FinalOutcome, per_query_frame, run_finals
from benchmark.run.interrupts import StopRequested, fit_study
from benchmark.run.result_schema import FinalResult, HoldoutTaskEntry
from benchmark.run.summary import _trial_counts
from benchmark.splits.splitters import make_split
from benchmark.tasks.specs import TaskSpec
from benchmark.tracking.store import (
    Tracker,
    flatten_metrics,
    parquet_bytes,
)
from benchmark.training.trial import prepare_trial_data
from benchmark.tuning.callback import TrialCallback
from benchmark.tuning.search import close_interrupted
from benchmark.tuning.space import load_search_space
from benchmark.tuning.trainable import TrialPayload, bridge_trainable, select_best, stopped_early
from benchmark.tuning.tuner import make_tuner

log = logging.getLogger(__name__)


def _final_json(task: TaskSpec, outcome: FinalOutcome, data, split, dataset) -> FinalResult:
    modes = {task.mode(d) for d in task.directions}
    pick = lambda metrics: {m: v for m, v in metrics.items() if m in modes}  # noqa: E731
    return {
        "dataset": {**dataset.summary(), "n_texts": len(data.texts)},
        "split": {**split.summary(), "evaluated": "test"},
        "config": outcome.config.model_dump(),
        "config_digest": outcome.config.digest(),
        "encoders": data.encoders,
        "seeds": outcome.seeds,
        "timing": {
            "encode_seconds": round(data.encode_seconds, 3),
            "encoded_items": data.encoded_items,
            "train_seconds": round(outcome.train_seconds, 3),
            "eval_seconds": round(outcome.eval_seconds, 3),
        },
        "metrics": pick(outcome.metrics),
        "baseline": pick(outcome.baseline),
        "comparisons": {k: v for k, v in outcome.comparisons.items() if k.split("/")[0] in modes},
        "seed_values": pick(outcome.seed_values),
    }


def _display(task: TaskSpec, final: dict) -> dict[str, float]:
    """The task parent's display columns (the saved views): the chosen bridge's primary test value, CI and n."""
    mode, metric = task.primary_key.split("/")
    entry = final["metrics"].get(mode, {}).get(metric)
    return display_metrics(entry["value"], entry["ci_low"], entry["ci_high"], entry["n"]) if entry else {}


def _ranking(task: TaskSpec, final: dict, config: TrialConfig) -> dict[str, str]:
    mode, metric = task.primary_key.split("/")
    bridge = final["metrics"].get(mode, {}).get(metric)
    untrained = final["baseline"].get(mode, {}).get(metric)
    if not bridge or not untrained:
        return {}
    best = f"bridge ({config.mol_encoder.name}+{config.text_encoder.name})"
    rows = sorted([(bridge["value"], best), (untrained["value"], "untrained heads")], reverse=True)
    return {TAG_BEST: rows[0][1], TAG_RANKING: " > ".join(f"{name} {value:.3f}" for value, name in rows)}


def _log_finals(
    tracker: Tracker, parent: str, task: TaskSpec, outcome: FinalOutcome, final: dict, data, split, run_uid: str
) -> None:
    for seed, result in zip(outcome.seeds, outcome.per_seed, strict=True):
        if tracker.find_run(**{TAG_RUN_UID: run_uid, TAG_TASK: task.name, TAG_STAGE: STAGE_FINAL, "seed": str(seed)}):
            continue
        child = tracker.start_run(
            f"final seed {seed}",
            {
                TAG_RUN_UID: run_uid,
                TAG_TASK: task.name,
                TAG_STAGE: STAGE_FINAL,
                "seed": seed,
                TAG_NOTE: f"The configuration chosen on validation, retrained with seed {seed} and tested once on "
                f"{task.name}'s test split.",
                TAG_ENCODERS: f"{outcome.config.mol_encoder.name}+{outcome.config.text_encoder.name}",
            },
            parent_id=parent,
        )
        tracker.log(
            child,
            params=outcome.config.model_copy(update={"seed": seed}).flat(),
            metrics={**flatten_metrics(result.metrics, "test"), **flatten_metrics(result.baseline, "baseline.test")},
            steps={"train.loss": [(h["epoch"], h["loss"]) for h in result.history]},
        )
        tracker.end(child)
    metrics = {**flatten_metrics(final["metrics"], "test"), **flatten_metrics(final["baseline"], "baseline.test")}
    for key, diff in final["comparisons"].items():
        base = f"compare.{key.replace('/', '.').replace('@', '_at_')}"
        metrics.update(
            {
                f"{base}.difference": diff["difference"],
                f"{base}.ci_low": diff["ci_low"],
                f"{base}.ci_high": diff["ci_high"],
                f"{base}.p_value": diff["p_value"],
            }
        )
    notes = sorted({e["note"] for by in final["metrics"].values() for e in by.values() if e.get("note")})
    tracker.log(
        parent,
        params={f"chosen.{k}": v for k, v in outcome.config.flat().items() if k != "seed"},
        metrics={k: v for k, v in {**metrics, **_display(task, final)}.items() if v == v},  # NaN: no interval
        tags={
            **({TAG_INTERVAL_NOTE: "; ".join(notes)} if notes else {}),
            **_ranking(task, final, outcome.config),
            TAG_FINAL_SEEDS: ",".join(map(str, outcome.seeds)),
            "chosen_encoders": f"{outcome.config.mol_encoder.name}+{outcome.config.text_encoder.name}",
            TAG_CHOSEN_CONFIG: short_config(outcome.config),
        },
    )
    tracker.log_text(parent, yaml.safe_dump(outcome.config.model_dump(), sort_keys=True), "config.yaml")
    tracker.log_text(parent, json.dumps(final, indent=2), "final.json")
    tracker.log_bytes(parent, parquet_bytes(per_query_frame(outcome, data)), "per_query_ranks.parquet")
    first = outcome.per_seed[0]
    if "bridge" in first.extras:
        rows = split.test
        before = plots.pair_similarities(first.extras["untrained_bridge"], data, rows)
        after = plots.pair_similarities(first.extras["bridge"], data, rows)
        tracker.log_bytes(
            parent,
            plots.cosine_heatmaps(before, after, f"{task.name}: first {len(after)} test pairs"),
            "cosine_heatmap.png",
        )
    curves = {
        f"{mode} (seed {outcome.seeds[0]})": run.recall_curve()
        for mode, run in first.runs.items()
        if mode.startswith("text_to_molecule")
    }
    tracker.log_bytes(parent, plots.recall_curves(curves, f"{task.name}: Recall@k"), "recall_at_k.png")


def _run_holdout_group(ctx: RunContext, key: str, group: list[TaskSpec], dataset) -> dict[str, HoldoutTaskEntry]:
    from ray import tune  # ray: heavy, imported only when a study or cluster is used

    options, suite, tracker, state, progress = (
        ctx.settings.options,
        ctx.settings.suite,
        ctx.tracker,
        ctx.state,
        ctx.progress,
    )
    space = load_search_space(options.search_space or suite.search_space)
    mol_choices, text_choices = space.encoder_choices()
    first = group[0]
    split = make_split(dataset, first.split.name, first.split.seed, first.split.fractions)
    progress(
        f"[{', '.join(t.name for t in group)}] {split.name} split {split.checksum}: train {len(split.train)}, "
        f"val {len(split.val)}, test {len(split.test)} pairs{' (LEAKY)' if split.leaky else ''}"
    )
    datas = {}
    for mol in mol_choices:
        for text in text_choices:
            cfg = TrialConfig(mol_encoder=mol, text_encoder=text, text_field=first.dataset.text_field)
            datas[TrialPayload.key(cfg)] = prepare_trial_data(dataset, cfg, split, cache=ctx.cache)
    encoded = sum(d.encoded_items for d in datas.values())
    progress(
        f"  embeddings: {len(datas)} encoder pair(s), {encoded} items encoded "
        f"({sum(d.encode_seconds for d in datas.values()):.1f}s; the rest from the cache)"
    )
    encoders = ", ".join(f"{m['name']}+{t['name']}" for m in mol_choices for t in text_choices)
    parents = {
        t.name: ctx.parent_run(
            t, dataset, {TAG_SPLIT_CHECKSUM: split.checksum, "search_space": space.name, TAG_ENCODERS: encoders}
        )
        for t in group
    }
    payload = TrialPayload(
        space,
        datas,
        split,
        [t.primary_key for t in group],
        suite.eval_every,
        threads=ctx.settings.resources.threads,
    )
    settings = ctx.settings.study(
        f"{suite.name}-{split.name}-{key}",
        space,
        options.num_samples or suite.num_samples,
        asha=suite.asha if options.asha is None else options.asha,
    )
    callback = TrialCallback(
        tracker,
        parents,
        {t.name: t.primary_key for t in group},
        state.run_uid,
        space,
        progress,
        planned=settings.num_samples,
        label=f"{split.name} split: {', '.join(t.name for t in group)}",
    )
    if ctx.stop.requested:
        raise StopRequested(f"before tuning {', '.join(t.name for t in group)}")
    tuner = make_tuner(
        tune.with_parameters(bridge_trainable, payload=payload),
        settings,
        space,
        callbacks=[callback],
        resume=options.resume,
    )
    grid, study = fit_study(
        tuner,
        callback,
        settings.num_samples,
        settings.time_budget_s,
        stop=ctx.stop,
        compute=ctx.compute,
        progress=progress,
    )
    if ctx.stop.requested:  # no Optuna trial stays RUNNING: the interrupted ones are failed, rerun on --resume
        close_interrupted(settings.optuna_storage, [settings.name])
    finals: dict[str, FinalOutcome] = {}
    results = {}
    for task in group:
        entry = {
            "description": task.description,
            "primary_metric": task.primary_key,
            "leaky": task.leaky,
            "trials": study.as_dict(),
        }
        if task.name in state.get("tasks_done", {}):  # final before an interruption: not again
            results[task.name] = state["tasks_done"][task.name]
            continue
        if ctx.stop.requested:  # no final starts after a Ctrl-C; tasks already final stay
            left = {
                t.name: {
                    **entry,
                    "description": t.description,
                    "primary_metric": t.primary_key,
                    "leaky": t.leaky,
                    "error": "interrupted before its final fits",
                }
                for t in group
                if t.name not in results
            }
            raise StopRequested(
                f"{_trial_counts(study.as_dict())}; finals of {', '.join(left)} not run", {**results, **left}
            )
        # interrupted trials and those successive halving stopped early never reached their end: never chosen
        never = set(study.interrupted) | stopped_early(grid, space)
        chosen = select_best(grid, f"val/{task.primary_key}", exclude=never)
        if chosen is None:
            entry["error"] = (
                "every trial failed"
                if study.failed
                else "no trial finished within the time budget; raise --time-budget"
            )
            tracker.end(parents[task.name], "FAILED")
            results[task.name] = entry
            continue
        config_dict, trial_id, val_value = chosen
        cfg = space.trial_config(config_dict)
        digest = f"{cfg.digest()}-{','.join(map(str, task.final_seeds))}"
        if digest not in finals:
            progress(
                f"  final: {task.name} <- trial {trial_id} (val {task.primary_key} {val_value:.3f}); "
                f"seeds {list(task.final_seeds)} on the test side"
            )
            final_started = time.perf_counter()
            finals[digest] = run_finals(
                cfg,
                datas[TrialPayload.key(cfg)],
                split,
                list(task.final_seeds),
                n_boot=task.bootstrap.n_boot,
                bootstrap_seed=task.bootstrap.seed,
            )
            ctx.compute.fit_seconds += time.perf_counter() - final_started
        else:
            progress(
                f"  final: {task.name} <- trial {trial_id} (val {task.primary_key} {val_value:.3f}); "
                "same configuration and seeds as above: trained once, evaluated in this task's mode"
            )
        outcome = finals[digest]
        data = datas[TrialPayload.key(cfg)]
        final = _final_json(task, outcome, data, split, dataset)
        entry["chosen"] = {
            "trial_id": trial_id,
            "val_value": val_value,
            "short": short_config(cfg),
            "config": cfg.model_dump(),
        }
        entry["final"] = final
        _log_finals(tracker, parents[task.name], task, outcome, final, data, split, state.run_uid)
        tracker.end(parents[task.name])
        results[task.name] = entry
        state.setdefault("tasks_done", {})[task.name] = entry
        state.save()
    return results
