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

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable

import torch

from benchmark.cluster.ray_cluster import where_am_i
from benchmark.core.names import (
    REPEATED_CV,
    TAG_FOLDS_CHECKSUM,
    TAG_PROTOCOL,
)
from benchmark.data.cleaning import PairDataset
from benchmark.model.config import TrialConfig
from benchmark.run.context import ComputeLedger, RunContext, TrialResources
from benchmark.run.cv_jobs import FitJob, System, fixed_jobs
from benchmark.run.cv_logging import FoldLogger
from benchmark.run.interrupts import StopRequested, StopSignal, fit_study
from benchmark.run.result_schema import CVTaskEntry, SearchSummary
from benchmark.splits.folds import FoldPlan, plan_folds
from benchmark.tasks.specs import TaskSpec
from benchmark.training.trial import FitScore, TrialData, fit_and_score, prepare_trial_data
from benchmark.tuning.callback import TrialCallback
from benchmark.tuning.importance import fold_importances
from benchmark.tuning.importance import summarize as summarize_importance
from benchmark.tuning.outcome import StudyOutcome
from benchmark.tuning.search import StudySettings, close_interrupted
from benchmark.tuning.trainable import (
    OBJECTIVE,
    TrialPayload,
    bridge_trainable,
    select_best,
    split_fold,
    stopped_early,
    trial_device,
)
from benchmark.tuning.tuner import make_tuner

log = logging.getLogger(__name__)


# ---- stage 1: plan -------------------------------------------------------------------------------------------------
def plan(dataset: PairDataset, task: TaskSpec) -> FoldPlan:
    p = task.protocol
    return plan_folds(
        dataset,
        task.split.name,
        folds=p.folds,
        repeats=p.repeats,
        seed=task.split.seed,
        inner_val_fraction=p.inner_val_fraction,
    )


# ---- stage 2: embeddings -------------------------------------------------------------------------------------------
def prepare(dataset: PairDataset, folds: FoldPlan, systems: list[System], text_field: str, cache) -> tuple[dict, dict]:
    """TrialData per (fold, encoder pair) for tuning (fitted on inner train) and for final fits (fitted on the
    whole training portion); identical embeddings (frozen encoders) are one shared object."""

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


def inputs_cut(prepared) -> dict[str, dict[str, int]]:
    """Encoder name -> {"cut": items longer than it reads, "of": items it encoded}, over prepared TrialData
    (encoders without a limit say None: not listed)."""
    out: dict[str, dict[str, int]] = {}
    for data in prepared:
        for side, matrix in (("molecule", data.mol_features), ("text", data.text_features)):
            encoder = data.encoders[side]
            if encoder.get("truncated") is not None:
                out[encoder["name"]] = {"cut": int(encoder["truncated"]), "of": int(matrix.shape[0])}
    return out


# ---- stages 3 and 4: tune per fold, select per task ----------------------------------------------------------------
def tune(
    system: System,
    group: list[TaskSpec],
    folds: FoldPlan,
    tuning: dict,
    study: StudySettings,
    callback: TrialCallback,
    *,
    eval_every: int,
    resources: TrialResources,
    resume: bool,
    stop: StopSignal,
    compute: ComputeLedger,
    progress: Callable[[str], None],
) -> tuple[object, StudyOutcome]:
    """One Ray Tune experiment for `system` over every fold (one seeded Optuna study per fold, inner validation
    only); (result grid, how its trials ended). Raises `StopRequested` after a Ctrl-C."""
    from ray import tune as ray_tune  # ray: heavy, imported only when a study or cluster is used

    payload = TrialPayload(
        system.space,
        tuning,
        None,
        [t.primary_key for t in group],
        eval_every,
        threads=resources.threads,
        folds={f.name: f.split for f in folds.folds},
    )
    tuner = make_tuner(
        ray_tune.with_parameters(bridge_trainable, payload=payload),
        study,
        system.space,
        callbacks=[callback],
        resume=resume,
        folds=[f.name for f in folds.folds],
    )
    planned = study.num_samples * len(folds.folds)
    grid, outcome = fit_study(
        tuner, callback, planned, study.time_budget_s, stop=stop, compute=compute, progress=progress
    )
    if stop.requested:
        close_interrupted(study.optuna_storage, [f"{study.name}-{f.name}" for f in folds.folds])
        raise StopRequested(
            f"tuning {system.name}: {outcome.finished} of {outcome.planned} trials finished, "
            f"{len(outcome.interrupted)} interrupted"
        )
    progress(
        f"  {system.name}: {outcome.finished} trials finished, {outcome.failed} failed over {len(folds.folds)} folds"
        + outcome.retries()
    )
    return grid, outcome


def search_summary(system: System, study: StudySettings, folds: FoldPlan, grid, retried: int = 0) -> SearchSummary:
    """How the system searched (trials, attempts tried again, how many successive halving stopped) and fANOVA
    importance over folds."""
    names = {f.name: f"{study.name}-{f.name}" for f in folds.folds}
    per_fold = fold_importances(study.optuna_storage, names, seed=study.seed) if study.optuna_storage else {}
    return {
        "configurations_per_fold": study.num_samples,
        "successive_halving": study.asha,
        "halving_factor": study.halving_factor,
        "trials": sum(1 for r in grid if r.error is None and r.metrics),
        **({"retried": retried} if retried else {}),
        "stopped_early": len(stopped_early(grid, system.space)),
        "importance": summarize_importance(per_fold),
    }


def select(system: System, group: list[TaskSpec], folds: FoldPlan, grid, outcome: StudyOutcome) -> list[FitJob]:
    """Per fold and task, the best finished trial on inner validation by the task's primary metric (the trial
    objective where inner validation has no group for it), as fit jobs; one job per distinct configuration."""
    jobs: dict[tuple[str, str], FitJob] = {}
    # interrupted trials and trials stopped early by successive halving never reached their end: never chosen
    excluded = set(outcome.interrupted) | stopped_early(grid, system.space)
    for fold in folds.folds:
        for task in group:
            by = f"val/{task.primary_key}"
            best = select_best(grid, by, fold.name, exclude=excluded)
            if best is None:  # e.g. a small inner validation side without a target of >= 3 molecules
                by = OBJECTIVE
                best = select_best(grid, by, fold.name, exclude=excluded)
                if best is not None:
                    log.warning(
                        "%s, fold %s: no trial of %s has %s on inner validation; chosen by the trial objective instead",
                        task.name,
                        fold.name,
                        system.name,
                        task.primary_key,
                    )
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


# ---- stage 5: fit and test, in parallel ----------------------------------------------------------------------------
def _fit_task(config: dict, data: TrialData, split, threads: int) -> FitScore:
    torch.set_num_threads(max(1, threads))
    score = fit_and_score(TrialConfig.model_validate(config), data, split, side="test", device=trial_device())
    return dataclasses.replace(score, where=where_am_i())


def run_fits(
    jobs: list[FitJob],
    final: dict,
    on_done: Callable[[FitJob, FitScore | None, str | None], None],
    *,
    resources: TrialResources,
    stop: StopSignal,
    progress: Callable[[str], None],
) -> None:
    """Every job as a Ray task (scheduled over the cluster); `on_done` sees each as it completes."""
    import ray  # ray: heavy, imported only when a study or cluster is used

    if not jobs:
        return
    refs = {}
    remote = ray.remote(_fit_task).options(
        num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=max(resources.max_failures, 1)
    )
    threads = resources.threads
    for job in jobs:
        data = final[TrialPayload.key(job.config, job.fold.name)]
        refs.setdefault(id(data), (ray.put(data), data))
    pending = {
        remote.remote(
            job.config.model_dump(),
            refs[id(final[TrialPayload.key(job.config, job.fold.name)])][0],
            job.fold.fit_split(),
            threads,
        ): job
        for job in jobs
    }
    done, started = 0, time.perf_counter()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        if stop.requested:  # a Ctrl-C: fits not done are cancelled and refitted on --resume
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
            progress(
                f"  fits: {done}/{len(jobs)} done, {elapsed:.0f}s elapsed, "
                f"ETA {elapsed / done * (len(jobs) - done):.0f}s"
            )


def system_digest(system: System, study: StudySettings | None, task: TaskSpec, eval_every: int) -> str:
    """What makes a system's fits on a fold (its space, budget, search seed, schedule and the task's text field):
    two runs with equal digests on folds with equal checksums fit the same thing, so one's fits serve the other."""
    payload = {
        "space": system.space.model_dump(exclude={"name", "description"}),
        "text_field": task.dataset.text_field,
        "eval_every": eval_every if system.tuned else None,
        "search": None
        if study is None
        else {"n": study.num_samples, "asha": study.asha, "f": study.halving_factor, "seed": study.seed},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- the stages together -------------------------------------------------------------------------------------------
def run_group(
    ctx: RunContext,
    group: list[TaskSpec],
    dataset: PairDataset,
    systems: list[System],
    study_for: Callable[[System], StudySettings],
) -> dict[str, CVTaskEntry]:
    """One task group through every stage; returns results.json entries per task."""
    settings, state, progress = ctx.settings, ctx.state, ctx.progress
    first = group[0]
    folds = plan(dataset, first)
    recorded = state.setdefault("folds", {}).get(first.split_key())
    if recorded and settings.options.resume:
        folds.verify(recorded)
    state["folds"][first.split_key()] = folds.checksum
    state.save()
    progress(
        f"[{', '.join(t.name for t in group)}] {REPEATED_CV} {first.protocol.folds} folds x "
        f"{first.protocol.repeats} repeats of the {folds.split_name} split (by {folds.unit}), checksum "
        f"{folds.checksum}; systems: {', '.join(s.name for s in systems)}"
    )

    started = time.perf_counter()
    tuning, final = prepare(dataset, folds, systems, first.dataset.text_field, ctx.cache)
    ctx.compute.prepare_seconds += time.perf_counter() - started
    progress(f"  embeddings ready for {len(folds.folds)} folds ({time.perf_counter() - started:.1f}s)")

    parents = {
        t.name: ctx.parent_run(t, dataset, {TAG_PROTOCOL: REPEATED_CV, TAG_FOLDS_CHECKSUM: folds.checksum})
        for t in group
    }
    logger = FoldLogger(
        ctx.tracker, state.run_uid, parents, ctx.compute, group, dataset, folds, systems, inputs_cut(tuning.values())
    )
    jobs: list[FitJob] = []
    for system in systems:
        if ctx.stop.requested:
            raise StopRequested(f"before tuning {system.name}")
        study = study_for(system) if system.tuned else None
        digest = logger.digests[system.name] = system_digest(system, study, first, settings.suite.eval_every)
        if settings.options.reuse_fits and logger.reuse(system, digest):
            progress(f"  {system.name}: its fits on these folds are in this store already (system {digest}): reused")
            continue
        if not system.tuned:
            jobs += fixed_jobs(system, group, folds)
            continue
        callback = TrialCallback(
            ctx.tracker,
            {t.name: logger.system_run(t, system) for t in group},
            {t.name: t.primary_key for t in group},
            state.run_uid,
            system.space,
            progress,
            system=system.name,
            planned=study.num_samples * len(folds.folds),
            label=f"{system.name}, {len(folds.folds)} folds",
        )
        grid, outcome = tune(
            system,
            group,
            folds,
            tuning,
            study,
            callback,
            eval_every=settings.suite.eval_every,
            resources=settings.resources,
            resume=settings.options.resume,
            stop=ctx.stop,
            compute=ctx.compute,
            progress=progress,
        )
        jobs += select(system, group, folds, grid, outcome)
        logger.search[system.name] = search_summary(system, study, folds, grid, outcome.retried)
    todo = [j for j in jobs if not logger.already_fitted(j)]
    progress(
        f"  fitting {len(todo)} (system, fold) configurations on the training portions, testing each once"
        + (f" ({len(jobs) - len(todo)} already in MLflow)" if len(todo) < len(jobs) else "")
    )
    run_fits(todo, final, logger.log_fit, resources=settings.resources, stop=ctx.stop, progress=progress)
    return logger.finish()
