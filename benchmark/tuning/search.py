"""The Tune study: Optuna searchers (one seeded study per fold, resumable, within a budget) and the Tuner."""

from __future__ import annotations

import base64
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState, create_trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from benchmark.core.errors import BenchmarkError
from benchmark.core.names import OPTUNA_INTERRUPTED, OPTUNA_RERUN_OF, OPTUNA_TUNE_TRIAL, TAG_SUPERSEDED
from benchmark.tuning.trainable import FOLD_KEY, OBJECTIVE

log = logging.getLogger(__name__)


@dataclass
class StudySettings:
    name: str
    storage_path: str  # a folder, or a URI Ray Tune understands (s3://...)
    num_samples: int
    time_budget_s: float | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    asha: bool = False
    halving_factor: int = 2
    max_reports: int = 10
    seed: int = 0
    optuna_storage: str | None = None
    max_failures: int = 2


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose persistent study tolerates trials Tune re-runs after a restore.

    A trial that finished just before an interruption may already be closed in the Optuna
    study while Tune's last checkpoint still lists it as running; Tune then runs it again and
    its reports must not crash the study. A trial a stop interrupted was failed then (marked
    `interrupted`, see `close_interrupted`); its rerun's result joins the study as a new COMPLETE
    trial with the same parameters (`rerun_of` its number), so TPE and fANOVA see it.
    """

    def relocate_storage(self, url: str) -> None:
        """Use the Optuna study at `url` from now on, and after `restore` (which brings back the pickled searcher
        of the run that saved it, with that run's storage URL: a run folder copied or moved elsewhere must write its
        own `optuna.db`, never the original's)."""
        self._relocate_to = url
        self._bind_storage(url)

    def _bind_storage(self, url: str | None) -> None:
        if not url or self._storage is None or getattr(self._storage, "url", None) == url:
            return
        self._storage = optuna.storages.RDBStorage(url)
        if self._ot_study is not None:
            self._ot_study = optuna.load_study(
                study_name=self._study_name, storage=self._storage, sampler=self._sampler
            )
            self._ot_trials = {
                tune_id: optuna.trial.Trial(self._ot_study, trial._trial_id)
                for tune_id, trial in self._ot_trials.items()
            }

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if config is not None and trial_id in self._ot_trials:  # which Tune trial (and MLflow run) this one is
            self._ot_trials[trial_id].set_user_attr(OPTUNA_TUNE_TRIAL, trial_id)
        return config

    def restore(self, checkpoint_path: str) -> None:
        """Restore, then mark the study's trials that the saved searcher never handed out (superseded).

        A driver killed after an `ask` but before Tune's next saved state leaves a trial in the persistent study
        that the resumed search does not know: RUNNING, it is failed and marked (never left RUNNING); already
        finished (its result told), it cannot be changed, so its number is listed in the study's user attribute
        `superseded` - its evaluation stays for TPE, but it is not one of the fold's budgeted trials."""
        target = getattr(self, "_relocate_to", None)
        super().restore(checkpoint_path)  # the saved searcher's whole __dict__, its storage URL included
        self._relocate_to = target
        self._bind_storage(target)
        if self._storage is None or self._ot_study is None:
            return
        known = {t.number for t in self._ot_trials.values()}
        lost = [t for t in self._ot_study.get_trials(deepcopy=False) if t.number not in known]
        for trial in lost:
            if trial.state == TrialState.RUNNING:
                self._ot_study._storage.set_trial_user_attr(trial._trial_id, TAG_SUPERSEDED, True)
                self._ot_study.tell(trial.number, state=TrialState.FAIL)
        if lost:
            listed = set(self._ot_study.user_attrs.get(TAG_SUPERSEDED, []))
            self._ot_study.set_user_attr(TAG_SUPERSEDED, sorted(listed | {t.number for t in lost}))

    def on_trial_result(self, trial_id, result):
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            log.debug("trial %s already closed in the Optuna study", trial_id)

    def on_trial_complete(self, trial_id, result=None, error=False):
        try:  # (OptunaSearch logs, and does not raise, when its `tell` finds the trial closed)
            super().on_trial_complete(trial_id, result, error)
        except UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)
        if self._storage is not None:
            self._record_rerun(trial_id, result, error)

    def _record_rerun(self, trial_id: str, result: dict | None, error: bool) -> None:
        value = (result or {}).get(self._metric)
        if error or value is None or trial_id not in self._ot_trials:
            return
        closed = self._ot_study._storage.get_trial(self._ot_trials[trial_id]._trial_id)
        if closed.state != TrialState.FAIL or not closed.user_attrs.get(OPTUNA_INTERRUPTED):
            return  # closed by its own result before the interruption: recorded already
        if any(t.user_attrs.get(OPTUNA_RERUN_OF) == closed.number for t in self._ot_study.get_trials(deepcopy=False)):
            return  # its rerun is in the study already
        attrs = {k: v for k, v in closed.user_attrs.items() if k != OPTUNA_INTERRUPTED}
        self._ot_study.add_trial(
            create_trial(
                params=closed.params,
                distributions=closed.distributions,
                value=value,
                user_attrs={**attrs, OPTUNA_RERUN_OF: closed.number},
            )
        )


def close_interrupted(storage: str | None, study_names: list[str]) -> int:
    """After a stop: fail the studies' RUNNING trials, marked `interrupted` (an Optuna study is never left with
    RUNNING trials); a resumed run trains them again under the same Tune trial and records the result as a new
    trial (`ResumableOptunaSearch`). Returns how many."""
    closed = 0
    for name in study_names if storage else []:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # never created (the stop came first)
            continue
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(trial._trial_id, OPTUNA_INTERRUPTED, True)
            study.tell(trial.number, state=TrialState.FAIL)
            closed += 1
    return closed


class BudgetSearch(Searcher):
    """A searcher that starts no trial once the study's time budget is spent; running trials finish.

    (Tune's own `time_budget_s` stops running trials mid-training, whose last reports are then not their
    results.) The clock starts at the first suggestion in this process, so a resumed study gets the budget
    again.
    """

    def __init__(self, searcher: Searcher, budget_s: float):
        super().__init__(metric=OBJECTIVE, mode="max")
        self.searcher, self.budget_s = searcher, budget_s
        self._deadline: float | None = None

    def __getstate__(self):
        return {**self.__dict__, "_deadline": None}

    def get_state(self) -> dict:  # a wrapper's own state, as Tune saves it (the wrapped searcher saves itself)
        return {"budget_s": self.budget_s}

    def set_state(self, state: dict) -> None:
        self.budget_s = state["budget_s"]

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        if self._deadline is None:
            self._deadline = time.monotonic() + self.budget_s
        if time.monotonic() >= self._deadline:
            return Searcher.FINISHED
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)

    def relocate_storage(self, url: str) -> None:
        self.searcher.relocate_storage(url)


class PerFoldSearch(Searcher):
    """One Tune searcher over several outer folds: an independent Optuna study per fold.

    Trials are handed out round-robin (the fold with the fewest so far), `per_fold` each; results
    go back only to the study of the trial's own fold, so selection inside a fold never sees
    another fold's data (whose inner validation may hold this fold's test molecules).
    """

    def __init__(self, searchers: dict[str, Searcher], per_fold: int):
        super().__init__(metric=OBJECTIVE, mode="max")
        self.searchers, self.per_fold = searchers, per_fold
        self.folds = list(searchers)
        self.given = {fold: 0 for fold in self.folds}
        self.fold_of: dict[str, str] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        for searcher in self.searchers.values():
            searcher.set_search_properties(metric, mode, config, **spec)
        return True

    def relocate_storage(self, url: str) -> None:
        for searcher in self.searchers.values():
            searcher.relocate_storage(url)

    def suggest(self, trial_id: str):
        open_folds = [f for f in self.folds if self.given[f] < self.per_fold]
        if not open_folds:
            return Searcher.FINISHED
        fold = min(open_folds, key=lambda f: (self.given[f], self.folds.index(f)))
        config = self.searchers[fold].suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return config
        self.given[fold] += 1
        self.fold_of[trial_id] = fold
        return {**config, FOLD_KEY: fold}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.fold_of:
            self.searchers[self.fold_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        if trial_id in self.fold_of:
            self.searchers[self.fold_of[trial_id]].on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        """One file (Tune syncs only this one): own bookkeeping as JSON, each fold's study as the bytes that
        OptunaSearch's own `save` writes (base64)."""

        studies = {}
        with tempfile.TemporaryDirectory() as tmp:
            for fold, searcher in self.searchers.items():
                searcher.save(str(Path(tmp) / "fold"))
                studies[fold] = base64.b64encode((Path(tmp) / "fold").read_bytes()).decode()
        with open(checkpoint_path, "w") as handle:
            json.dump(
                {
                    "folds": self.folds,
                    "per_fold": self.per_fold,
                    "given": self.given,
                    "fold_of": self.fold_of,
                    "studies": studies,
                },
                handle,
            )

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            state = json.load(handle)
        if state["folds"] != self.folds:
            raise BenchmarkError(
                f"the saved search covers folds {state['folds']}, this run {self.folds}: "
                "start a new run instead of resuming"
            )
        self.per_fold, self.given, self.fold_of = state["per_fold"], state["given"], state["fold_of"]
        with tempfile.TemporaryDirectory() as tmp:
            for fold, encoded in state["studies"].items():
                (Path(tmp) / "fold").write_bytes(base64.b64decode(encoded))
                self.searchers[fold].restore(str(Path(tmp) / "fold"))


class PerFoldHalving(FIFOScheduler):
    """Successive halving (ASHA) inside each outer fold: one scheduler per fold.

    A trial is compared only with trials of its own fold, at the same rung (number of validation reports,
    i.e. the same epoch), on that fold's inner validation side; Ray's ASHAScheduler alone would rank trials of
    different folds (different validation sets) against each other.

    At the last rung a trial goes on to the full budget only if it is its fold's best there so far. Asynchronous
    halving promotes generously while a rung holds few results (the first arrival always goes on), and more so
    as TPE's proposals improve: on 5 folds of random-global with the default suite's space (factor 4), 4.6
    configurations per fold ran all 100 epochs where 2 of 32 were meant to, 55% of the search's compute. With
    the rule the number is the count of running records among the arrivals (about ln n + 0.6 for n in random
    order, more when later proposals are better).
    """

    def __init__(self, **asha):
        super().__init__()
        self.asha = asha
        self.per_fold: dict[str, ASHAScheduler] = {}
        factor, top = asha["reduction_factor"], asha["grace_period"]
        while top * factor < asha["max_t"]:
            top *= factor
        self.top_rung = top if top < asha["max_t"] else None  # no rung below the full budget: no rule
        self.best_at_top: dict[str, float] = {}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are given to each fold's scheduler (OBJECTIVE, max)

    def _of(self, trial) -> ASHAScheduler:
        fold = (trial.config or {}).get(FOLD_KEY, "")
        if fold not in self.per_fold:
            self.per_fold[fold] = ASHAScheduler(metric=OBJECTIVE, mode="max", **self.asha)
        return self.per_fold[fold]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = self._of(trial).on_trial_result(tune_controller, trial, result)
        value = result.get(OBJECTIVE)
        if self.top_rung is None or result.get(self.asha["time_attr"]) != self.top_rung or value is None:
            return decision
        fold = (trial.config or {}).get(FOLD_KEY, "")
        best = self.best_at_top.get(fold)
        self.best_at_top[fold] = value if best is None else max(best, value)
        return FIFOScheduler.STOP if best is not None and value < best else decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "successive halving per fold: " + "; ".join(f"{f}: {s.debug_string()}" for f, s in self.per_fold.items())


def halving(max_reports: int, folds: list[str] | None, factor: int = 2):
    """Successive halving over validation reports: rungs at 1, f, f^2, ... reports, the best 1/f goes on."""
    asha = {
        "time_attr": "training_iteration",
        "max_t": max(max_reports, 1),
        "grace_period": 1,
        "reduction_factor": factor,
    }
    return PerFoldHalving(**asha) if folds else ASHAScheduler(**asha)  # Tune gives it the metric and mode
