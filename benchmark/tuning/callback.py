"""Trials into MLflow as they end: one batch per trial, written by the driver from a background thread."""

from __future__ import annotations

import logging
import math
import queue
import threading
from dataclasses import dataclass
from typing import Callable

from ray.tune import Callback

from benchmark.core.names import (
    LOCATION_TAGS,
    STAGE_TRIAL,
    TAG_ATTEMPTS,
    TAG_ENCODERS,
    TAG_FOLD,
    TAG_NOTE,
    TAG_PRIMARY,
    TAG_REPEAT,
    TAG_RUN_UID,
    TAG_STAGE,
    TAG_STATUS,
    TAG_STOPPED_EARLY,
    TAG_SUPERSEDED,
    TAG_SYSTEM,
    TAG_TASK,
    TAG_TRIAL_ID,
    metric_key,
    parse_fold_name,
)
from benchmark.model.config import flatten
from benchmark.tracking.store import Tracker
from benchmark.tuning.outcome import COMPLETED_TRIALS
from benchmark.tuning.progress import StudyBoard
from benchmark.tuning.space import SearchSpace
from benchmark.tuning.trainable import OBJECTIVE, split_fold

log = logging.getLogger(__name__)


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

    def __init__(
        self,
        tracker: Tracker | None,
        parents: dict[str, str],
        task_keys: dict[str, str],
        run_uid: str,
        space: SearchSpace,
        progress: Callable[[str], None] | None = say,
        system: str | None = None,
        planned: int = 0,
        label: str | None = None,
    ):
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
        self.supersede_lost({t.trial_id for t in trials})

    def supersede_lost(self, known: set[str]) -> int:
        """Tag this experiment's trial runs that Ray Tune no longer knows as superseded; returns how many.

        A driver killed outright (SIGKILL, a lost head) can have logged a finished trial that Tune's last saved
        experiment state (written every ~10 s) does not list yet; the resumed search then never hears of it and
        spends that budget on a new trial. The run stays in MLflow (it did finish: its validation numbers are
        real) with `superseded` set, so per-fold trial counts and the report skip it."""
        if self.tracker is None:
            return 0
        lost = 0
        for task in self.parents:
            scope = {TAG_RUN_UID: self.run_uid, TAG_TASK: task, TAG_STAGE: STAGE_TRIAL}
            if self.system:
                scope[TAG_SYSTEM] = self.system
            for run in self.tracker.runs(**scope):
                tags = run.data.tags
                if tags.get(TAG_TRIAL_ID) in known or tags.get(TAG_SUPERSEDED) == "true":
                    continue
                note = tags.get(TAG_NOTE, "") + (
                    " Superseded: the driver was killed before Ray Tune saved this trial in its state, so the "
                    "resumed search replaced it (its numbers are kept here, not counted)."
                )
                self.tracker.log(run.info.run_id, tags={TAG_SUPERSEDED: "true", TAG_NOTE: note})
                lost += 1
        if lost and self.progress:
            self.progress(f"  {lost} trial run(s) lost from Ray Tune's saved state are tagged superseded in MLflow")
        return lost

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        keep = {
            k: v
            for k, v in result.items()
            if k in ("epoch", "loss", "loss_history", "threads", OBJECTIVE) or k.startswith("val/")
        }
        self.results.setdefault(trial.trial_id, []).append(keep)
        self.where[trial.trial_id] = {k: result[k] for k in LOCATION_TAGS if k in result}

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed attempt that Tune retries (a lost node, a killed worker): its reports are dropped, so
        the trial is logged once, with the attempt that finished."""
        self.results.pop(trial.trial_id, None)
        self.attempts[trial.trial_id] = self.attempts.get(trial.trial_id, 1) + 1
        if self.progress:
            self.progress(
                f"  trial {trial.trial_id} failed on {self.where.get(trial.trial_id, {}).get('host', '?')}; "
                f"retrying (attempt {self.attempts[trial.trial_id]})"
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
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
            snapshot = _TrialSnapshot(
                trial.trial_id,
                dict(trial.config),
                str(getattr(trial, "error_file", "") or ""),
                dict(self.where.get(trial.trial_id, {})),
                self.attempts.get(trial.trial_id, 1),
            )
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
            state = (
                status
                if t is trial
                else {"TERMINATED": "done", "RUNNING": "running", "ERROR": "failed"}.get(t.status, "pending")
            )
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
        epochs = None
        try:
            cfg = self.space.trial_config(sampled)
            params, encoders, epochs = cfg.flat(), f"{cfg.mol_encoder.name}+{cfg.text_encoder.name}", cfg.optim.epochs
        except Exception:  # the configuration itself may be why the trial failed
            params, encoders = dict(flatten(sampled, sep="/")), None
        reached = history[-1]["epoch"] if history else 0
        if history and "threads" in history[-1]:
            params["threads"] = history[-1]["threads"]  # torch threads the trial ran with (its CPU share)
        stopped = not failed and epochs is not None and 0 < reached < epochs
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
            run_id = self.tracker.start_run(
                _trial_name(trial.trial_id, self.system, fold),
                {
                    TAG_RUN_UID: self.run_uid,
                    TAG_TASK: task,
                    TAG_TRIAL_ID: trial.trial_id,
                    TAG_STAGE: STAGE_TRIAL,
                    TAG_STATUS: "failed" if failed else "finished",
                    TAG_PRIMARY: self.task_keys[task],
                    TAG_ENCODERS: encoders,
                    **where,
                    **{LOCATION_TAGS[k]: v for k, v in trial.where.items()},
                    TAG_ATTEMPTS: trial.attempts,
                    TAG_STOPPED_EARLY: stopped,
                    **({"error": trial.error_file or "trial raised"} if failed else {}),
                    TAG_NOTE: _trial_note(trial, self.system, fold, failed)
                    + (f" Stopped early by successive halving at epoch {reached} of {epochs}." if stopped else ""),
                },
                parent_id=parent,
            )
            self.tracker.log(run_id, params={**params, **terms}, metrics={"epochs_reached": reached}, steps=steps)
            self.tracker.end(run_id, "FAILED" if failed else "FINISHED")


def _trial_name(trial_id: str, system: str | None, fold: str | None) -> str:
    """'quick-tuned trial 1a2b3c4d r0f2' (repeated CV) or 'trial 1a2b3c4d' (holdout)."""
    return " ".join(p for p in (system, f"trial {trial_id}", fold) if p)


def _trial_note(trial: _TrialSnapshot, system: str | None, fold: str | None, failed: bool) -> str:
    where = trial.where.get("host")
    return (
        f"Tuning trial {trial.trial_id}{' of system ' + system if system else ''}"
        + (f" in outer fold {fold} (trained on its inner training part)" if fold else " (trained on the training side)")
        + f", scored on validation data only; {'failed' if failed else 'finished'}"
        f"{' on ' + where if where else ''}{f' after {trial.attempts} attempts' if trial.attempts > 1 else ''}."
    )
