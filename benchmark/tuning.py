"""Ray Tune trials with Optuna search, on one machine or a Ray cluster.

Embeddings are computed once on the driver and shipped to trials through the object store
(`tune.with_parameters`). A trial trains one bridge and reports validation metrics every
`eval_every` epochs (never test metrics); its objective is the mean of the primary metrics of
the tasks that share its split. Only the driver writes to MLflow, from a Tune callback.

Under repeated cross-validation one Tune experiment tunes a system inside every outer fold at
once: each trial's config carries its fold, `PerFoldSearch` keeps one seeded Optuna study per
fold (a fold's sampler only ever sees that fold's inner-validation results), and trials of all
folds run side by side on the cluster.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from optuna.exceptions import UpdateFinishedTrialError
from ray.tune import Callback
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from benchmark.cluster import fitting_trials, where_am_i
from benchmark.config import TrialConfig, flatten
from benchmark.errors import BenchmarkError
from benchmark.search_space import SearchSpace
from benchmark.splits import Split
from benchmark.names import (LOCATION_TAGS, STAGE_TRIAL, TAG_ATTEMPTS, TAG_ENCODERS, TAG_NOTE, TAG_FOLD, TAG_PRIMARY, TAG_REPEAT, TAG_RUN_UID, TAG_STAGE,
                             TAG_STATUS, TAG_SYSTEM, TAG_TASK, TAG_TRIAL_ID, metric_key,
                             parse_fold_name)
from benchmark.progress import StudyBoard
from benchmark.tracking import Tracker
from benchmark.trial import TrialData, train_on_split

log = logging.getLogger(__name__)
OBJECTIVE = "objective"
#: key of a trial's config naming its outer fold (repeated cross-validation)
FOLD_KEY = "fold"


def split_fold(config: dict) -> tuple[str | None, dict]:
    """(fold name or None, the sampled configuration without it)."""
    return config.get(FOLD_KEY), {k: v for k, v in config.items() if k != FOLD_KEY}


def trial_device() -> str:
    """The GPU Ray assigned to this trial (CUDA_VISIBLE_DEVICES is set by Ray), else the CPU."""
    import ray

    if not ray.is_initialized():  # a trial run without Ray (perf's bare trials) must not start one
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        gpu_ids = ray.get_gpu_ids()
    except Exception:
        gpu_ids = []
    return "cuda" if gpu_ids and torch.cuda.is_available() else "cpu"


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
    import ray
    from ray import tune
    from ray.experimental import internal_kv

    key = f"{ray.get_runtime_context().get_job_id()}/{tune.get_context().get_trial_id()}"
    earlier = internal_kv._internal_kv_get(key, namespace=RAISED_NAMESPACE)
    if earlier:
        raise RuntimeError(f"not trained again: this trial's own code raised on an earlier attempt "
                           f"({earlier.decode()}); retries are for lost nodes and killed workers")
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
            report({"epoch": epoch, "loss": record.get("loss"), "loss_history": list(pending), "device": str(device),
                    **{f"val/{k}": v for k, v in values.items()}, OBJECTIVE: objective_of(values, payload.objective_keys)})
            pending.clear()

    train_on_split(cfg, mol_x, text_x, data, split, validate_every=payload.eval_every, on_epoch=on_epoch)


def say(line: str) -> None:
    """Default progress output (a module function: Tune pickles callbacks with the experiment)."""
    print(line, flush=True)


@dataclass
class _TrialSnapshot:
    trial_id: str
    config: dict
    error_file: str
    where: dict
    attempts: int = 1


class BackgroundWriter:
    """One daemon thread running submitted writes in order; `flush` waits for them and re-raises
    the first failure (so an unusable tracking store still stops the run)."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlflow-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            fn, args = self._queue.get()
            try:
                if self._error is None:
                    fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller at the next flush
                self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, fn: Callable, *args) -> None:
        if self._error is not None:
            self.flush()
        self._queue.put((fn, args))

    def flush(self) -> None:
        self._queue.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class TrialCallback(Callback):
    """Driver-side: logs each finished or failed trial to MLflow (once per task) and prints progress."""

    def __init__(self, tracker: Tracker | None, parents: dict[str, str], task_keys: dict[str, str], run_uid: str,
                 space: SearchSpace, progress: Callable[[str], None] | None = say, system: str | None = None,
                 planned: int = 0, label: str | None = None):
        self.tracker, self.parents, self.task_keys, self.run_uid = tracker, parents, task_keys, run_uid
        self.space, self.progress, self.system = space, progress, system
        self.board = StudyBoard(label or system or ", ".join(parents), planned, keys=dict(task_keys))
        self.results: dict[str, list[dict]] = {}
        self.where: dict[str, dict] = {}  # trial id -> node id, host, node IP of its last report
        self.attempts: dict[str, int] = {}
        self._writer: BackgroundWriter | None = None

    def __getstate__(self):
        # Tune pickles callbacks with its experiment state: keep a custom progress function and
        # the writer thread out of it
        state = dict(self.__dict__)
        if state.get("progress") not in (None, say):
            state["progress"] = say
        state["_writer"] = None
        return state

    def get_state(self):
        """Tune calls this before it saves experiment state: every trial it records as finished
        is then in MLflow too (a resumed run never skips logging a trial)."""
        self.flush()
        return None

    def on_experiment_end(self, trials, **info):
        self.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        keep = {k: v for k, v in result.items() if k in ("epoch", "loss", "loss_history", OBJECTIVE) or k.startswith("val/")}
        self.results.setdefault(trial.trial_id, []).append(keep)
        self.where[trial.trial_id] = {k: result[k] for k in LOCATION_TAGS if k in result}

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed attempt that Tune retries (a lost node, a killed worker): its reports are dropped, so
        the trial is logged once, with the attempt that finished."""
        self.results.pop(trial.trial_id, None)
        self.attempts[trial.trial_id] = self.attempts.get(trial.trial_id, 1) + 1
        if self.progress:
            self.progress(f"  trial {trial.trial_id} failed on {self.where.get(trial.trial_id, {}).get('host', '?')}; "
                          f"retrying (attempt {self.attempts[trial.trial_id]})")

    def on_trial_complete(self, iteration, trials, trial, **info):
        from benchmark.interrupts import COMPLETED_TRIALS

        COMPLETED_TRIALS.add(trial.trial_id)
        self._finish(trials, trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trials, trial, failed=True)

    def _finish(self, trials, trial, failed: bool) -> None:
        history = self.results.get(trial.trial_id, [])
        last = history[-1] if history else {}
        if not failed:
            for task, key in self.task_keys.items():
                value = last.get(f"val/{key}")
                if value is not None and value > self.board.best.get(task, -math.inf):
                    self.board.best[task] = value  # the best validation value per task (progress shows it)
        if self.tracker is not None:  # MLflow writes happen on a driver thread, off Tune's event loop
            if self._writer is None:
                self._writer = BackgroundWriter()
            snapshot = _TrialSnapshot(trial.trial_id, dict(trial.config), str(getattr(trial, "error_file", "") or ""),
                                      dict(self.where.get(trial.trial_id, {})), self.attempts.get(trial.trial_id, 1))
            self._writer.submit(self._log, snapshot, list(history), failed)
        self._show(trials, trial, "failed" if failed else "done")

    def on_trial_start(self, iteration, trials, trial, **info):
        self._show(trials, trial, "running")

    def _show(self, trials, trial, status: str) -> None:
        """Counts over Tune's trials (this one's status given: the callback runs before it flips) to the progress."""
        if not self.progress:
            return
        counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
        for t in trials:
            state = status if t is trial else {"TERMINATED": "done", "RUNNING": "running", "ERROR": "failed"}.get(
                t.status, "pending")
            counts[state] += 1
        board = self.board
        board.done, board.running, board.failed = counts["done"], counts["running"], counts["failed"]
        board.planned = max(board.planned, len(trials))
        if getattr(self.progress, "live", None) is not None:  # a live table: every change
            self.progress.trials(board)
        elif status != "running":  # plain lines: one per ended trial
            self.progress(board.line())

    def _log(self, trial: _TrialSnapshot, history: list[dict], failed: bool) -> None:
        fold, sampled = split_fold(trial.config)
        try:
            cfg = self.space.trial_config(sampled)
            params, encoders = cfg.flat(), f"{cfg.mol_encoder.name}+{cfg.text_encoder.name}"
        except Exception:  # the configuration itself may be why the trial failed
            params, encoders = dict(flatten(sampled, sep="/")), None
        terms = {k: v for k, v in flatten(sampled, sep="/").items() if k.startswith("terms")}
        where = {TAG_SYSTEM: self.system, TAG_FOLD: fold, TAG_REPEAT: parse_fold_name(fold)[0] if fold else None}
        steps: dict[str, list[tuple[int, float]]] = {}
        for record in history:
            for key, value in record.items():
                if key.startswith("val/") or key == OBJECTIVE:
                    steps.setdefault(metric_key(key.replace("/", ".")), []).append((record["epoch"], value))
            start = record["epoch"] - len(record.get("loss_history", [])) + 1
            for offset, loss in enumerate(record.get("loss_history", [])):
                steps.setdefault("train.loss", []).append((start + offset, loss))
        for task, parent in self.parents.items():
            if self.tracker.find_run(**{TAG_RUN_UID: self.run_uid, TAG_TASK: task, TAG_TRIAL_ID: trial.trial_id}):
                continue  # logged before an interruption: never twice
            run_id = self.tracker.start_run(_trial_name(trial.trial_id, self.system, fold), {
                TAG_RUN_UID: self.run_uid, TAG_TASK: task, TAG_TRIAL_ID: trial.trial_id, TAG_STAGE: STAGE_TRIAL,
                TAG_STATUS: "failed" if failed else "finished", TAG_PRIMARY: self.task_keys[task], TAG_ENCODERS: encoders,
                **where, **{LOCATION_TAGS[k]: v for k, v in trial.where.items()}, TAG_ATTEMPTS: trial.attempts,
                **({"error": trial.error_file or "trial raised"} if failed else {}),
                TAG_NOTE: _trial_note(trial, self.system, fold, failed),
            }, parent_id=parent)
            self.tracker.log(run_id, params={**params, **terms}, steps=steps)
            self.tracker.end(run_id, "FAILED" if failed else "FINISHED")


def _trial_name(trial_id: str, system: str | None, fold: str | None) -> str:
    """'quick-tuned trial 1a2b3c4d r0f2' (repeated CV) or 'trial 1a2b3c4d' (holdout)."""
    return " ".join(p for p in (system, f"trial {trial_id}", fold) if p)


def _trial_note(trial: _TrialSnapshot, system: str | None, fold: str | None, failed: bool) -> str:
    where = trial.where.get("host")
    return (f"Tuning trial {trial.trial_id}{' of system ' + system if system else ''}"
            f"{' in outer fold ' + fold + ' (trained on its inner training part)' if fold else ' (trained on the training side)'}"
            f", scored on validation data only; {'failed' if failed else 'finished'}"
            f"{' on ' + where if where else ''}{f' after {trial.attempts} attempts' if trial.attempts > 1 else ''}.")


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
    max_reports: int = 10
    seed: int = 0
    optuna_storage: str | None = None
    max_failures: int = 2


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose persistent study tolerates trials Tune re-runs after a restore.

    A trial that finished just before an interruption may already be closed in the Optuna
    study while Tune's last checkpoint still lists it as running; Tune then runs it again and
    its reports must not crash the study.
    """

    def on_trial_result(self, trial_id, result):
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            log.debug("trial %s already closed in the Optuna study", trial_id)

    def on_trial_complete(self, trial_id, result=None, error=False):
        try:
            super().on_trial_complete(trial_id, result, error)
        except UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)


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
        import time

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
        import base64
        import tempfile

        studies = {}
        with tempfile.TemporaryDirectory() as tmp:
            for fold, searcher in self.searchers.items():
                searcher.save(str(Path(tmp) / "fold"))
                studies[fold] = base64.b64encode((Path(tmp) / "fold").read_bytes()).decode()
        with open(checkpoint_path, "w") as handle:
            json.dump({"folds": self.folds, "per_fold": self.per_fold, "given": self.given, "fold_of": self.fold_of,
                       "studies": studies}, handle)

    def restore(self, checkpoint_path: str) -> None:
        import base64
        import tempfile

        with open(checkpoint_path) as handle:
            state = json.load(handle)
        if state["folds"] != self.folds:
            raise BenchmarkError(f"the saved search covers folds {state['folds']}, this run {self.folds}: "
                                 "start a new run instead of resuming")
        self.per_fold, self.given, self.fold_of = state["per_fold"], state["given"], state["fold_of"]
        with tempfile.TemporaryDirectory() as tmp:
            for fold, encoded in state["studies"].items():
                (Path(tmp) / "fold").write_bytes(base64.b64decode(encoded))
                self.searchers[fold].restore(str(Path(tmp) / "fold"))


def make_tuner(trainable: Callable, settings: StudySettings, space: SearchSpace, *, callbacks: list,
               resume: bool = False, folds: list[str] | None = None):
    """A Tuner (or a restored one) with seeded TPE through OptunaSearch and optional ASHA."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    # With a searcher, Tune keeps one trial pending unless a cap is given: default to what fits
    max_concurrent = settings.max_concurrent or fitting_trials(settings.cpus_per_trial, settings.gpus_per_trial)
    wrapped = tune.with_resources(trainable, resources)
    path = f"{str(settings.storage_path).rstrip('/')}/{settings.name}"
    if resume and tune.Tuner.can_restore(path):
        log.info("resuming %s", path)
        return tune.Tuner.restore(path, trainable=wrapped, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False)
    storage = optuna.storages.RDBStorage(settings.optuna_storage) if settings.optuna_storage else None

    def optuna_search(offset: int = 0, suffix: str = ""):
        return ResumableOptunaSearch(space=space.define_by_run, metric=OBJECTIVE, mode="max",
                                        sampler=optuna.samplers.TPESampler(seed=settings.seed + offset),
                                        storage=storage, study_name=settings.name + suffix if storage else None)

    if folds:  # num_samples counts trials per fold
        searcher = PerFoldSearch({fold: optuna_search(i, f"-{fold}") for i, fold in enumerate(folds)}, settings.num_samples)
    else:
        searcher = optuna_search()
    if settings.time_budget_s:
        searcher = BudgetSearch(searcher, settings.time_budget_s)
    num_samples = settings.num_samples * len(folds) if folds else settings.num_samples
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=max(settings.max_reports, 1), grace_period=1,
                               reduction_factor=2) if settings.asha else None)
    return tune.Tuner(
        wrapped,
        tune_config=tune.TuneConfig(metric=OBJECTIVE, mode="max", search_alg=searcher, scheduler=scheduler,
                                    num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=settings.name, storage_path=str(settings.storage_path), verbose=0,
                                  callbacks=callbacks, failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
