"""Repeated cross-validation of named systems on one task group, as stages.

    plan folds -> prepare embeddings -> tune per fold -> select -> fit and test -> compare -> log

Tasks that share a dataset, split and protocol form a group: they share folds, trials and fits
(one fit of a system on a fold is scored in every retrieval mode). A fixed system is fitted once
per fold; a tuned system is searched inside each fold's training portion (inner train /
inner validation, one Optuna study per fold, all folds in one Ray Tune experiment), each task
takes its best trial per fold by its own primary metric on inner validation, and the chosen
configuration is refitted on the whole training portion. Every fit is tested once on its held-out
fold, as a Ray task, so folds run in parallel over the cluster. The systems are then compared
fold by fold (`benchmark.comparison`) and everything is logged as it completes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass, field

import pandas as pd
import yaml

from benchmark.comparison import Comparison, compare_systems, mean_ci
from benchmark.config import TrialConfig, short_config
from benchmark.data.cleaning import PairDataset
from benchmark.folds import Fold, FoldPlan, plan_folds
from benchmark.interrupts import StopRequested, fit_study
from benchmark.names import (TAG_NOTE, COMPARISON_ARTIFACT, LOCATION_TAGS, CV_PREFIX, REPEATED_CV, STAGE_FIT, STAGE_SYSTEM,
                             TAG_FOLD, TAG_FOLDS_CHECKSUM, TAG_PRIMARY, TAG_PROTOCOL, TAG_REPEAT, TAG_RUN_UID,
                             TAG_STAGE, TAG_SYSTEM, TAG_TASK, TEST_PREFIX, metric_key)
from benchmark.search_space import SearchSpace, load_search_space
from benchmark.tasks import GROUPED_METRICS, METRICS, SystemSpec, TaskSpec
from benchmark.trial import FitScore, TrialData, fit_and_score, prepare_trial_data
from benchmark.tuning import OBJECTIVE, select_best

log = logging.getLogger(__name__)


@dataclass
class System:
    spec: SystemSpec
    space: SearchSpace

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tuned(self) -> bool:
        return bool(self.space.parameters or self.space.terms)


@dataclass
class FitJob:
    system: str
    fold: Fold
    config: TrialConfig
    tasks: list[str]  # the tasks whose selection chose this configuration (all of the group for fixed systems)
    val_value: dict[str, float] = field(default_factory=dict)  # per task, tuned systems only
    selected_by: dict[str, str] = field(default_factory=dict)  # per task: the validation metric it was chosen by


def task_metrics(task: TaskSpec) -> list[str]:
    """'mode/metric' keys a task reports: its modes x the metrics of its retrieval kind."""
    metrics = GROUPED_METRICS if task.retrieval == "grouped" else METRICS
    return [f"{task.mode(d)}/{m}" for d in task.directions for m in metrics]


# ---- stage 1: plan -------------------------------------------------------------------------------------------------
def plan(dataset: PairDataset, task: TaskSpec) -> FoldPlan:
    p = task.protocol
    return plan_folds(dataset, task.split.name, folds=p.folds, repeats=p.repeats, seed=task.split.seed,
                      inner_val_fraction=p.inner_val_fraction)


def load_systems(specs: list[SystemSpec]) -> list[System]:
    return [System(spec, load_search_space(spec.search_space)) for spec in specs]


# ---- stage 2: embeddings -------------------------------------------------------------------------------------------
def prepare(dataset: PairDataset, folds: FoldPlan, systems: list[System], text_field: str, cache) -> tuple[dict, dict]:
    """TrialData per (fold, encoder pair) for tuning (fitted on inner train) and for final fits (fitted on the
    whole training portion); identical embeddings (frozen encoders) are one shared object."""
    from benchmark.tuning import TrialPayload

    shared: dict[tuple, TrialData] = {}
    tuning, final = {}, {}
    configs = {}
    for system in systems:
        mols, texts = system.space.encoder_choices()
        for mol in mols:
            for text in texts:
                cfg = TrialConfig(mol_encoder=mol, text_encoder=text, text_field=text_field)
                configs.setdefault(TrialPayload.key(cfg), cfg)
    for fold in folds.folds:
        for cfg in configs.values():
            for target, split in ((tuning, fold.split), (final, fold.fit_split())):
                data = prepare_trial_data(dataset, cfg, split, cache=cache)
                key = (data.encoders["molecule"]["key"], data.encoders["text"]["key"])
                target[TrialPayload.key(cfg, fold.name)] = shared.setdefault(key, data)
    return tuning, final


# ---- stages 3 and 4: tune per fold, select per task ----------------------------------------------------------------
def tune_and_select(ctx, system: System, group: list[TaskSpec], folds: FoldPlan, tuning: dict, parents: dict,
                    settings_for: Callable[[System], object]) -> list[FitJob]:
    from ray import tune

    from benchmark.tuning import TrialCallback, TrialPayload, bridge_trainable, make_tuner

    payload = TrialPayload(system.space, tuning, None, [t.primary_key for t in group], ctx.suite.eval_every,
                           threads=int(max(1, ctx.options.cpus_per_trial)), folds={f.name: f.split for f in folds.folds})
    settings = settings_for(system)
    callback = TrialCallback(ctx.tracker, parents, {t.name: t.primary_key for t in group}, ctx.state["run_uid"],
                             system.space, ctx.progress, system=system.name, planned=settings.num_samples * len(folds.folds),
                             label=f"{system.name}, {len(folds.folds)} folds")
    tuner = make_tuner(tune.with_parameters(bridge_trainable, payload=payload), settings, system.space,
                       callbacks=[callback], resume=ctx.options.resume, folds=[f.name for f in folds.folds])
    grid, study = fit_study(ctx, tuner, callback, settings.num_samples * len(folds.folds), settings.time_budget_s)
    if ctx.stop.requested:
        raise StopRequested(f"tuning {system.name}: {study.finished} of {study.planned} trials finished, "
                            f"{len(study.interrupted)} interrupted")
    jobs: dict[tuple[str, str], FitJob] = {}
    ctx.progress(f"  {system.name}: {study.finished} trials finished, {study.failed} failed over "
                 f"{len(folds.folds)} folds")
    from benchmark.tuning import split_fold

    for fold in folds.folds:
        for task in group:
            by = f"val/{task.primary_key}"
            best = select_best(grid, by, fold.name, exclude=set(study.interrupted))
            if best is None:  # e.g. a small inner validation side without a target of >= 3 molecules
                by = OBJECTIVE
                best = select_best(grid, by, fold.name, exclude=set(study.interrupted))
                if best is not None:
                    log.warning("%s, fold %s: no trial of %s has %s on inner validation; chosen by the trial "
                                "objective instead", task.name, fold.name, system.name, task.primary_key)
            if best is None:
                log.warning("%s: no successful trial of %s on fold %s", task.name, system.name, fold.name)
                continue
            config, _, value = best
            cfg = system.space.trial_config(split_fold(config)[1]).model_copy(update={"seed": fold.repeat})
            job = jobs.setdefault((fold.name, cfg.digest()), FitJob(system.name, fold, cfg, []))
            job.tasks.append(task.name)
            job.val_value[task.name] = value
            job.selected_by[task.name] = by
    return list(jobs.values())


def fixed_jobs(system: System, group: list[TaskSpec], folds: FoldPlan) -> list[FitJob]:
    base = system.space.trial_config({})
    return [FitJob(system.name, f, base.model_copy(update={"seed": f.repeat}), [t.name for t in group])
            for f in folds.folds]


# ---- stage 5: fit and test, in parallel ----------------------------------------------------------------------------
def _fit_task(config: dict, data: TrialData, split, threads: int) -> FitScore:
    import torch

    from benchmark.cluster import where_am_i
    from benchmark.tuning import trial_device

    torch.set_num_threads(max(1, threads))
    score = fit_and_score(TrialConfig.model_validate(config), data, split, side="test", device=trial_device())
    return dataclasses.replace(score, where=where_am_i())


def run_fits(ctx, jobs: list[FitJob], final: dict, on_done: Callable[[FitJob, FitScore | None, str | None], None]) -> None:
    """Every job as a Ray task (scheduled over the cluster); `on_done` sees each as it completes."""
    import ray

    from benchmark.tuning import TrialPayload

    if not jobs:
        return
    refs = {}
    remote = ray.remote(_fit_task).options(num_cpus=ctx.options.cpus_per_trial, num_gpus=ctx.options.gpus_per_trial,
                                           max_retries=max(ctx.options.max_failures, 1))
    threads = int(max(1, ctx.options.cpus_per_trial))
    for job in jobs:
        data = final[TrialPayload.key(job.config, job.fold.name)]
        refs.setdefault(id(data), (ray.put(data), data))
    pending = {remote.remote(job.config.model_dump(), refs[id(final[TrialPayload.key(job.config, job.fold.name)])][0],
                             job.fold.fit_split(), threads): job for job in jobs}
    done, started = 0, time.perf_counter()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        if ctx.stop.requested:  # a Ctrl-C: fits not done are cancelled and refitted on --resume
            for ref in pending:
                ray.cancel(ref)
            raise StopRequested(f"fits: {done} of {len(jobs)} done, {len(pending)} cancelled")
        if not ready:
            continue
        job = pending.pop(ready[0])
        try:
            score, error = ray.get(ready[0]), None
        except Exception as exc:  # a crashed fit is recorded, the others go on
            score, error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        done += 1
        on_done(job, score, error)
        if done == len(jobs) or done % max(1, len(jobs) // 10) == 0:
            elapsed = time.perf_counter() - started
            ctx.progress(f"  fits: {done}/{len(jobs)} done, {elapsed:.0f}s elapsed, "
                         f"ETA {elapsed / done * (len(jobs) - done):.0f}s")


# ---- stage 6: compare ----------------------------------------------------------------------------------------------
def fold_summary(values: list[float]) -> dict:
    """Mean across folds with a t-based 95% CI and the number of folds (results.json and MLflow)."""
    return {k: v for k, v in mean_ci(values).items() if k != "sd"}


def compare_task(task: TaskSpec, scores: pd.DataFrame, *, alpha: float, max_variance_ratio: float) -> dict[str, Comparison]:
    """Comparison of the systems on every metric of the task (long frame: system, fold, key, value)."""
    out = {}
    for key in task_metrics(task):
        part = scores[scores["key"] == key]
        if part["system"].nunique() >= 2:
            try:
                out[key] = compare_systems(part, key, alpha=alpha, max_variance_ratio=max_variance_ratio)
            except ValueError as exc:
                log.warning("%s %s: no comparison (%s)", task.name, key, exc)
    return out


# ---- the stages together -------------------------------------------------------------------------------------------
def run_group(ctx, group: list[TaskSpec], dataset: PairDataset, systems: list[System], settings_for) -> dict:
    """One task group through every stage; returns results.json entries per task."""
    first = group[0]
    folds = plan(dataset, first)
    ctx.state.setdefault("folds", {})
    recorded = ctx.state["folds"].get(first.split_key())
    if recorded and ctx.options.resume:
        folds.verify(recorded)
    ctx.state["folds"][first.split_key()] = folds.checksum
    ctx.save_state()
    ctx.progress(f"[{', '.join(t.name for t in group)}] {REPEATED_CV} {first.protocol.folds} folds x "
                 f"{first.protocol.repeats} repeats of the {folds.split_name} split (by {folds.unit}), checksum "
                 f"{folds.checksum}; systems: {', '.join(s.name for s in systems)}")

    started = time.perf_counter()
    tuning, final = prepare(dataset, folds, systems, first.dataset.text_field, ctx.cache)
    ctx.compute["prepare_seconds"] += time.perf_counter() - started
    ctx.progress(f"  embeddings ready for {len(folds.folds)} folds ({time.perf_counter() - started:.1f}s)")

    logger = FoldLogger(ctx, group, dataset, folds, systems)
    jobs: list[FitJob] = []
    for system in systems:
        if ctx.stop.requested:
            raise StopRequested(f"before tuning {system.name}")
        if system.tuned:
            jobs += tune_and_select(ctx, system, group, folds, tuning,
                                    {t.name: logger.system_run(t, system) for t in group}, settings_for)
        else:
            jobs += fixed_jobs(system, group, folds)
    todo = [j for j in jobs if not logger.already_fitted(j)]
    ctx.progress(f"  fitting {len(todo)} (system, fold) configurations on the training portions, testing each once"
                 + (f" ({len(jobs) - len(todo)} already in MLflow)" if len(todo) < len(jobs) else ""))
    run_fits(ctx, todo, final, logger.log_fit)
    return logger.finish(ctx.options)


class FoldLogger:
    """MLflow runs of one group: task parent > system run > fit run per fold; results as they arrive."""

    def __init__(self, ctx, group: list[TaskSpec], dataset: PairDataset, folds: FoldPlan, systems: list[System]):
        self.ctx, self.group, self.dataset, self.folds, self.systems = ctx, group, dataset, folds, systems
        self.tracker, self.uid = ctx.tracker, ctx.state["run_uid"]
        self.parents = {t.name: ctx.parent_run(t, dataset, {TAG_PROTOCOL: REPEATED_CV,
                                                            TAG_FOLDS_CHECKSUM: folds.checksum}) for t in group}
        self.system_runs: dict[tuple[str, str], str] = {}
        self.rows: list[dict] = []  # task, system, fold, repeat, key, value
        self.failures: list[dict] = []
        self.chosen: dict[tuple[str, str], dict] = {}
        self.seconds: dict[str, float] = {"train": 0.0, "eval": 0.0}
        self._restore()

    def system_run(self, task: TaskSpec, system: System) -> str:
        key = (task.name, system.name)
        if key not in self.system_runs:
            tags = {TAG_RUN_UID: self.uid, TAG_TASK: task.name, TAG_SYSTEM: system.name, TAG_STAGE: STAGE_SYSTEM}
            self.system_runs[key] = self.tracker.find_run(**tags) or self.tracker.start_run(
                system.name, {**tags, TAG_PRIMARY: task.primary_key, "search_space": system.space.name,
                              "tuned": system.tuned, TAG_NOTE: system.spec.description},
                parent_id=self.parents[task.name])
        return self.system_runs[key]

    def _restore(self) -> None:
        """Fits logged by an interrupted run of the same run_uid are read back, not refitted."""
        from benchmark.tracking import _retry_locked

        client = self.tracker.client
        for task in self.group:
            runs = _retry_locked(lambda t=task: client.search_runs(
                [self.tracker.experiment_id], max_results=5000,
                filter_string=f"tags.{TAG_RUN_UID} = '{self.uid}' and tags.{TAG_TASK} = '{t.name}' "
                              f"and tags.{TAG_STAGE} = '{STAGE_FIT}'"))
            for run in runs:
                tags, metrics = run.data.tags, run.data.metrics
                for key in task_metrics(task):
                    name = metric_key(TEST_PREFIX, *key.split("/"))
                    if name in metrics:
                        self.rows.append({"task": task.name, "system": tags[TAG_SYSTEM], "fold": tags[TAG_FOLD],
                                          "repeat": int(tags[TAG_REPEAT]), "key": key, "value": metrics[name]})

    def already_fitted(self, job: FitJob) -> bool:
        have = {(r["task"], r["system"], r["fold"]) for r in self.rows}
        return all((t, job.system, job.fold.name) in have for t in job.tasks)

    def log_fit(self, job: FitJob, score: FitScore | None, error: str | None) -> None:
        system = next(s for s in self.systems if s.name == job.system)
        for task_name in job.tasks:
            task = next(t for t in self.group if t.name == task_name)
            self.chosen[(task_name, job.system, job.fold.name)] = {
                "config": short_config(job.config), "digest": job.config.digest(), "val": job.val_value.get(task_name),
                "selected_by": job.selected_by.get(task_name)}
            tags = {TAG_RUN_UID: self.uid, TAG_TASK: task_name, TAG_SYSTEM: job.system, TAG_STAGE: STAGE_FIT,
                    TAG_FOLD: job.fold.name, TAG_REPEAT: job.fold.repeat, "fold_checksum": job.fold.checksum,
                    "status": "failed" if error else "finished", **({"error": error} if error else {}),
                    **({LOCATION_TAGS[k]: v for k, v in score.where.items()} if score is not None else {})}
            tags[TAG_NOTE] = (f"{job.system} fitted on the training side of outer fold {job.fold.name} (repeat "
                              f"{job.fold.repeat}) and tested once on its test side"
                              + (f"; failed: {error}" if error else "") + ".")
            run = self.tracker.start_run(f"{job.system} fit {job.fold.name}", tags, parent_id=self.system_run(task, system))
            metrics = {}
            if score is not None:
                for key in task_metrics(task):
                    if key in score.values:
                        metrics[metric_key(TEST_PREFIX, *key.split("/"))] = score.values[key]
                        self.rows.append({"task": task_name, "system": job.system, "fold": job.fold.name,
                                          "repeat": job.fold.repeat, "key": key, "value": score.values[key]})
                for mode, n in score.n_queries.items():
                    metrics[metric_key(TEST_PREFIX, mode, "n_queries")] = n
                metrics["train_seconds"] = score.train_seconds
                if job.val_value.get(task_name) is not None:
                    metrics[metric_key("val", *task.primary_key.split("/"))] = job.val_value[task_name]
            else:
                self.failures.append({"task": task_name, "system": job.system, "fold": job.fold.name, "error": error})
            self.tracker.log(run, params=job.config.flat(), metrics=metrics)
            self.tracker.end(run, "FAILED" if error else "FINISHED")
        if score is not None:
            self.seconds["train"] += score.train_seconds
            self.seconds["eval"] += score.eval_seconds
            self.ctx.compute["fit_seconds"] += score.train_seconds + score.eval_seconds

    def finish(self, options) -> dict:
        frame = pd.DataFrame(self.rows, columns=["task", "system", "fold", "repeat", "key", "value"])
        frame = frame.drop_duplicates(["task", "system", "fold", "key"], keep="last")
        # a fixed order: fits complete in any order, and sums must not depend on it
        frame = frame.sort_values(["task", "system", "fold", "key"], ignore_index=True)
        results = {}
        for task in self.group:
            scores = frame[frame["task"] == task.name]
            comparisons = compare_task(task, scores, alpha=0.05, max_variance_ratio=9.0)
            entry = self._task_entry(task, scores, comparisons)
            self._log_task(task, scores, entry)
            results[task.name] = entry
        return results

    def _task_entry(self, task: TaskSpec, scores: pd.DataFrame, comparisons: dict[str, Comparison]) -> dict:
        systems = {}
        for system in self.systems:
            part = scores[scores["system"] == system.name]
            per_fold = {f: dict(zip(g["key"], g["value"])) for f, g in part.groupby("fold")}
            systems[system.name] = {
                "description": system.spec.description, "search_space": system.space.name, "tuned": system.tuned,
                "budget_per_fold": system.spec.num_samples if system.tuned else 0,
                "summary": {key: fold_summary(part[part["key"] == key]["value"].tolist()) for key in task_metrics(task)},
                "per_fold": per_fold,
                "chosen": {f: c for (t, s, f), c in sorted(self.chosen.items()) if t == task.name and s == system.name}
                if system.tuned else {},
            }
        failures = [f for f in self.failures if f["task"] == task.name]
        return {"description": task.description, "protocol": task.protocol.model_dump(), "primary_metric": task.primary_key,
                "leaky": task.leaky, "dataset": self.dataset.summary(), "folds": self.folds.summary(),
                "systems": systems, "failed_fits": failures,
                "comparison": {k: c.as_dict() for k, c in comparisons.items()},
                "seconds": {k: round(v, 1) for k, v in self.seconds.items()}}

    def _log_task(self, task: TaskSpec, scores: pd.DataFrame, entry: dict) -> None:
        parent = self.parents[task.name]
        for system in self.systems:
            run = self.system_run(task, system)
            metrics = {}
            for key, summary in entry["systems"][system.name]["summary"].items():
                base = metric_key(CV_PREFIX, *key.split("/"))
                metrics.update({f"{base}_{k}": v for k, v in summary.items() if v == v})
            self.tracker.log(run, metrics=metrics)
            self.tracker.end(run)
        comparison = entry["comparison"].get(task.primary_key)
        metrics, tags = {}, {}
        if comparison:
            tags = {"comparison_test": comparison["test"], "comparison_reason": comparison["reason"]}
            for p in comparison["pairs"]:
                base = f"compare.{p['a']}.vs.{p['b']}"
                metrics.update({f"{base}.difference": p["difference"], f"{base}.ci_low": p["ci_low"],
                                f"{base}.ci_high": p["ci_high"], f"{base}.p_adj": p["p_adj"]})
        self.tracker.log(parent, metrics={k: v for k, v in metrics.items() if v == v}, tags=tags)
        self.tracker.log_text(parent, json.dumps(entry, indent=2, default=float), COMPARISON_ARTIFACT)
        self.tracker.log_text(parent, yaml.safe_dump({s.name: {"search_space": s.space.name, "tuned": s.tuned,
                                                               "base": s.space.base} for s in self.systems}),
                              "systems.yaml")
        self.tracker.end(parent, "FINISHED" if not scores.empty else "FAILED")
