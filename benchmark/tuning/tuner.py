"""The Tuner of one study: made (or restored from verified state) with the suite's searchers, its state written
atomically and signed (`benchmark.tuning.state`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import optuna

from benchmark.cluster.ray_cluster import fitting_trials
from benchmark.core.errors import BenchmarkError
from benchmark.tuning.search import (
    BudgetSearch,
    PerFoldSearch,
    ResumableOptunaSearch,
    StudySettings,
    halving,
)
from benchmark.tuning.space import SearchSpace
from benchmark.tuning.state import StateSigner, storage_filesystem, verify_experiment
from benchmark.tuning.trainable import OBJECTIVE

log = logging.getLogger(__name__)


def check_tune_state(path: str) -> None:
    """Refuse a damaged Ray Tune experiment state before `Tuner.restore` trusts it.

    Tune restores from its newest `experiment_state-*.json`; a file that does not parse, or that lists fewer
    trials than the saved searcher handed out (`PerFoldSearch.given`, saved at the same checkpoint), would make
    it resume with earlier trials lost and the study then "finished" early: a silently partial run.
    Remote storage (s3://...) is not read here."""
    folder = Path(path)
    if not folder.is_dir():
        return
    states = sorted(folder.glob("experiment_state-*.json"))
    advice = (
        "the run cannot resume from it: start it again without --resume, or with another --output (the Optuna "
        "studies and MLflow runs of the damaged run stay as they are)"
    )
    if not states:
        raise BenchmarkError(f"Ray Tune's experiment state is missing from {folder}; {advice}")
    try:
        trials = json.loads(states[-1].read_text())["trial_data"]
        if not isinstance(trials, list):
            raise TypeError(f"trial_data is a {type(trials).__name__}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"Ray Tune's experiment state {states[-1]} is damaged ({exc}); {advice}") from None
    searchers = sorted(folder.glob("searcher-state-*.pkl"))
    given = None
    if searchers:
        try:  # PerFoldSearch.save writes JSON (other searchers pickle: not checked)
            given = sum(json.loads(searchers[-1].read_text())["given"].values())
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            given = None
    if given is not None and len(trials) < given:
        raise BenchmarkError(
            f"Ray Tune's experiment state {states[-1]} lists {len(trials)} trials but the search had started "
            f"{given}: the state is damaged; {advice}"
        )


class StudyTuner:
    """A Tune `Tuner` whose saved state is signed as Tune writes it (`StateSigner`) and verified before it is read:
    before a restore, and before the result grid unpickles a trial's error."""

    def __init__(self, tuner, signer: StateSigner):
        self.tuner, self.signer = tuner, signer

    def fit(self):
        try:
            grid = self.tuner.fit()
        finally:
            self.signer.sign_or_say()  # Tune's last save (at the end of fit) came after the callbacks' last call
        verify_experiment(self.signer.experiment_path)
        return grid


def _restore(path: str, wrapped, filesystem, callbacks: list, optuna_storage: str | None):
    """`Tuner.restore` of a verified experiment, writing where this run says: the callbacks (tracking store,
    progress) and the Optuna storage are this run's, not those pickled by the run that saved the state."""
    from ray import tune  # ray: heavy, imported only when a study or cluster is used

    log.info("resuming %s", path)
    verify_experiment(path)  # before anything in it is unpickled
    check_tune_state(path)
    try:
        tuner = tune.Tuner.restore(
            path,
            trainable=wrapped,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
            storage_filesystem=filesystem,
        )
    except (ModuleNotFoundError, AttributeError) as exc:
        if "benchmark" not in str(exc):
            raise
        raise BenchmarkError(
            f"the Ray Tune state in {path} was saved by another version of this package ({exc}); finish that "
            "run with the checkout that started it, or start a new run (without --resume, or with another --output)"
        ) from None
    internal = tuner._local_tuner  # Tune offers no public way to give a restored experiment new callbacks
    internal._run_config.callbacks = callbacks
    searcher = internal._tune_config.search_alg
    if optuna_storage and hasattr(searcher, "relocate_storage"):
        searcher.relocate_storage(optuna_storage)
    return tuner


def make_tuner(
    trainable: Callable,
    settings: StudySettings,
    space: SearchSpace,
    *,
    callbacks: list,
    resume: bool = False,
    folds: list[str] | None = None,
) -> StudyTuner:
    """A Tuner (or a restored one) with seeded TPE through OptunaSearch and optional ASHA; its state is written
    atomically, signed, and verified before it is restored."""
    from ray import tune  # ray: heavy, imported only when a study or cluster is used

    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    # With a searcher, Tune keeps one trial pending unless a cap is given: default to what fits
    max_concurrent = settings.max_concurrent or fitting_trials(settings.cpus_per_trial, settings.gpus_per_trial)
    wrapped = tune.with_resources(trainable, resources)
    path = f"{str(settings.storage_path).rstrip('/')}/{settings.name}"
    filesystem = storage_filesystem(str(settings.storage_path))
    signer = StateSigner(path)
    callbacks = [*callbacks, signer]
    if resume and tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        return StudyTuner(_restore(path, wrapped, filesystem, callbacks, settings.optuna_storage), signer)
    storage = optuna.storages.RDBStorage(settings.optuna_storage) if settings.optuna_storage else None

    def optuna_search(offset: int = 0, suffix: str = ""):
        return ResumableOptunaSearch(
            space=space.define_by_run,
            metric=OBJECTIVE,
            mode="max",
            sampler=optuna.samplers.TPESampler(seed=settings.seed + offset),
            storage=storage,
            study_name=settings.name + suffix if storage else None,
        )

    if folds:  # num_samples counts trials per fold
        searcher = PerFoldSearch(
            {fold: optuna_search(i, f"-{fold}") for i, fold in enumerate(folds)}, settings.num_samples
        )
    else:
        searcher = optuna_search()
    if settings.time_budget_s:
        searcher = BudgetSearch(searcher, settings.time_budget_s)
    num_samples = settings.num_samples * len(folds) if folds else settings.num_samples
    scheduler = halving(settings.max_reports, folds, settings.halving_factor) if settings.asha else None
    tuner = tune.Tuner(
        wrapped,
        tune_config=tune.TuneConfig(
            metric=OBJECTIVE,
            mode="max",
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=str(settings.storage_path),
            storage_filesystem=filesystem,
            verbose=0,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    signer.sign_storage_file("tuner.pkl")  # Tune wrote it straight to storage as the Tuner was made
    return StudyTuner(tuner, signer)
