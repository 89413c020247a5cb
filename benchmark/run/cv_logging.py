"""Repeated CV in MLflow and results.json: the per-fold fit runs, the per-system summaries over folds,
and the comparison of the systems, logged on the task's parent run.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
import yaml

from benchmark.core.names import (
    COMPARISON_ARTIFACT,
    CV_PREFIX,
    LOCATION_TAGS,
    STAGE_FIT,
    STAGE_SYSTEM,
    TAG_BEST,
    TAG_FOLD,
    TAG_GROUP,
    TAG_NOTE,
    TAG_PRIMARY,
    TAG_RANKING,
    TAG_REPEAT,
    TAG_RETRIEVAL,
    TAG_REUSED_FROM,
    TAG_RUN_UID,
    TAG_SPLIT,
    TAG_STAGE,
    TAG_SYSTEM,
    TAG_SYSTEM_DIGEST,
    TAG_TASK,
    TAG_TASK_RUN,
    TEST_PREFIX,
    display_metrics,
    metric_key,
)
from benchmark.data.cleaning import PairDataset
from benchmark.evaluation.comparison import Comparison, compare_systems, mean_ci, metric_bounds
from benchmark.model.config import short_config
from benchmark.run.context import ComputeLedger
from benchmark.run.cv_jobs import FitJob, System, task_metrics
from benchmark.run.result_schema import CVTaskEntry, FoldSummary, SearchSummary
from benchmark.splits.folds import FoldPlan
from benchmark.tasks.specs import TaskSpec
from benchmark.tracking.store import Tracker, _retry_locked
from benchmark.training.trial import FitScore

log = logging.getLogger(__name__)


def search_metrics(search: SearchSummary | None) -> dict[str, float]:
    """A tuned system's search on its MLflow run: trials, how many stopped early, importance per parameter."""
    if not search:
        return {}
    out = {
        "search.configurations_per_fold": search["configurations_per_fold"],
        "search.trials": search["trials"],
        "search.stopped_early": search["stopped_early"],
    }
    for param, s in search["importance"].items():
        out.update({f"importance.{param}_{k}": v for k, v in s.items() if v == v})
    return out


# ---- stage 6: compare ----------------------------------------------------------------------------------------------
def fold_summary(values: list[float], key: str) -> FoldSummary:
    """Mean across folds with a t-based 95% CI inside the metric's range, and the number of folds (results.json
    and MLflow)."""
    return {k: v for k, v in mean_ci(values, metric_bounds(key)).items() if k != "sd"}


def compare_task(
    task: TaskSpec, scores: pd.DataFrame, *, alpha: float, max_variance_ratio: float
) -> dict[str, Comparison]:
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


class FoldLogger:
    """MLflow runs of one group: task parent > system run > fit run per fold; results as they arrive."""

    def __init__(
        self,
        tracker: Tracker,
        run_uid: str,
        parents: dict[str, str],
        compute: ComputeLedger,
        group: list[TaskSpec],
        dataset: PairDataset,
        folds: FoldPlan,
        systems: list[System],
        inputs_cut: dict[str, dict[str, int]] | None = None,
    ):
        self.group, self.dataset, self.folds, self.systems = group, dataset, folds, systems
        self.tracker, self.uid, self.parents, self.compute = tracker, run_uid, parents, compute
        self.system_runs: dict[tuple[str, str], str] = {}
        self.rows: list[dict] = []  # task, system, fold, repeat, key, value
        self.failures: list[dict] = []
        self.chosen: dict[tuple[str, str], dict] = {}
        self.seconds: dict[str, float] = {"train": 0.0, "eval": 0.0}
        self.search: dict[str, SearchSummary] = {}  # tuned systems: how they searched (cv.search_summary)
        self.digests: dict[str, str] = {}  # system -> what made its fits (cv.system_digest), tagged on each fit
        self.inputs_cut = inputs_cut or {}  # encoder -> items it cut, of items (cv.inputs_cut)
        self._restore()

    def system_run(self, task: TaskSpec, system: System) -> str:
        """The system's run on this task: top level (not nested under the task parent), so the systems view lists
        one row per (task, system) without expanding anything; `task_run_id` names its task parent."""
        key = (task.name, system.name)
        if key not in self.system_runs:
            tags = {TAG_RUN_UID: self.uid, TAG_TASK: task.name, TAG_SYSTEM: system.name, TAG_STAGE: STAGE_SYSTEM}
            self.system_runs[key] = self.tracker.find_run(**tags) or self.tracker.start_run(
                system.name,
                {
                    **tags,
                    TAG_SPLIT: task.split.name,
                    TAG_RETRIEVAL: task.retrieval,
                    TAG_PRIMARY: task.primary_key,
                    TAG_TASK_RUN: self.parents[task.name],
                    "search_space": system.space.name,
                    "tuned": system.tuned,
                    TAG_NOTE: f"{system.spec.description} (task {task.name}; its parent run {self.parents[task.name]})",
                },
            )
        return self.system_runs[key]

    def _restore(self) -> None:
        """Fits logged by an interrupted run of the same run_uid are read back, not refitted."""

        client = self.tracker.client
        for task in self.group:
            runs = _retry_locked(
                lambda t=task: client.search_runs(
                    [self.tracker.experiment_id],
                    max_results=5000,
                    filter_string=f"tags.{TAG_RUN_UID} = '{self.uid}' and tags.{TAG_TASK} = '{t.name}' "
                    f"and tags.{TAG_STAGE} = '{STAGE_FIT}'",
                )
            )
            for run in runs:
                tags, metrics = run.data.tags, run.data.metrics
                for key in task_metrics(task):
                    name = metric_key(TEST_PREFIX, *key.split("/"))
                    if name in metrics:
                        self.rows.append(
                            {
                                "task": task.name,
                                "system": tags[TAG_SYSTEM],
                                "fold": tags[TAG_FOLD],
                                "repeat": int(tags[TAG_REPEAT]),
                                "key": key,
                                "value": metrics[name],
                            }
                        )

    def reuse(self, system: System, digest: str) -> bool:
        """Fits of `system` made by another run of this store (any experiment) with the same digest on folds with
        the same checksums: read back and referenced (a fit run tagged `reused_from`, the metrics copied), not
        refitted. True when every (task, fold) of the group was found; else nothing is reused."""
        if any(r["system"] == system.name for r in self.rows):
            return False  # this run's own fits (a resume) come first
        client = self.tracker.client
        experiments = [e.experiment_id for e in _retry_locked(lambda: client.search_experiments(max_results=1000))]
        checksums = {f.name: f.checksum for f in self.folds.folds}
        found: dict[tuple[str, str], object] = {}
        for task in self.group:
            runs = _retry_locked(
                lambda t=task: client.search_runs(
                    experiments,
                    max_results=5000,
                    filter_string=f"tags.{TAG_STAGE} = '{STAGE_FIT}' and tags.{TAG_SYSTEM_DIGEST} = '{digest}' "
                    f"and tags.{TAG_TASK} = '{t.name}' and tags.status = 'finished' "
                    f"and attributes.status = 'FINISHED'",
                )
            )
            for run in runs:
                tags = run.data.tags
                fold = tags.get(TAG_FOLD)
                if checksums.get(fold) == tags.get("fold_checksum") and tags.get(TAG_RUN_UID) != self.uid:
                    found.setdefault((task.name, fold), run)
        if len(found) < len(self.group) * len(checksums):
            return False
        for (task_name, fold_name), source in sorted(found.items()):
            self._log_reused(next(t for t in self.group if t.name == task_name), system, digest, source)
        return True

    def _log_reused(self, task: TaskSpec, system: System, digest: str, source) -> None:
        tags = source.data.tags
        run = self.tracker.start_run(
            f"{system.name} fit {tags[TAG_FOLD]} (reused)",
            {
                TAG_RUN_UID: self.uid,
                TAG_TASK: task.name,
                TAG_SYSTEM: system.name,
                TAG_STAGE: STAGE_FIT,
                TAG_FOLD: tags[TAG_FOLD],
                TAG_REPEAT: tags[TAG_REPEAT],
                "fold_checksum": tags["fold_checksum"],
                "status": "finished",
                TAG_SYSTEM_DIGEST: digest,
                TAG_REUSED_FROM: source.info.run_id,
                TAG_NOTE: f"{system.name} on outer fold {tags[TAG_FOLD]}: read back from run {source.info.run_id} "
                f"(experiment {source.info.experiment_id}), which fitted the same system on a fold with the same "
                "checksum; not refitted.",
            },
            parent_id=self.system_run(task, system),
        )
        metrics = {k: v for k, v in source.data.metrics.items() if k.startswith(f"{TEST_PREFIX}.")}
        self.tracker.log(run, params=dict(source.data.params), metrics=metrics)
        self.tracker.end(run)
        for key in task_metrics(task):
            name = metric_key(TEST_PREFIX, *key.split("/"))
            if name in metrics:
                self.rows.append(
                    {
                        "task": task.name,
                        "system": system.name,
                        "fold": tags[TAG_FOLD],
                        "repeat": int(tags[TAG_REPEAT]),
                        "key": key,
                        "value": metrics[name],
                    }
                )

    def already_fitted(self, job: FitJob) -> bool:
        have = {(r["task"], r["system"], r["fold"]) for r in self.rows}
        return all((t, job.system, job.fold.name) in have for t in job.tasks)

    def log_fit(self, job: FitJob, score: FitScore | None, error: str | None) -> None:
        system = next(s for s in self.systems if s.name == job.system)
        for task_name in job.tasks:
            task = next(t for t in self.group if t.name == task_name)
            self.chosen[(task_name, job.system, job.fold.name)] = {
                "config": short_config(job.config),
                "digest": job.config.digest(),
                "val": job.val_value.get(task_name),
                "selected_by": job.selected_by.get(task_name),
            }
            tags = {
                TAG_RUN_UID: self.uid,
                TAG_TASK: task_name,
                TAG_SYSTEM: job.system,
                TAG_STAGE: STAGE_FIT,
                TAG_FOLD: job.fold.name,
                TAG_REPEAT: job.fold.repeat,
                "fold_checksum": job.fold.checksum,
                "status": "failed" if error else "finished",
                **({TAG_SYSTEM_DIGEST: self.digests[job.system]} if job.system in self.digests else {}),
                **({"error": error} if error else {}),
                **({LOCATION_TAGS[k]: v for k, v in score.where.items()} if score is not None else {}),
            }
            tags[TAG_NOTE] = (
                f"{job.system} fitted on the training side of outer fold {job.fold.name} (repeat "
                f"{job.fold.repeat}) and tested once on its test side" + (f"; failed: {error}" if error else "") + "."
            )
            run = self.tracker.start_run(
                f"{job.system} fit {job.fold.name}", tags, parent_id=self.system_run(task, system)
            )
            metrics = {}
            if score is not None:
                for key in task_metrics(task):
                    if key in score.values:
                        metrics[metric_key(TEST_PREFIX, *key.split("/"))] = score.values[key]
                        self.rows.append(
                            {
                                "task": task_name,
                                "system": job.system,
                                "fold": job.fold.name,
                                "repeat": job.fold.repeat,
                                "key": key,
                                "value": score.values[key],
                            }
                        )
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
            self.compute.fit_seconds += score.train_seconds + score.eval_seconds

    def finish(self) -> dict[str, CVTaskEntry]:
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

    @staticmethod
    def _ordered(task: TaskSpec, entry: dict) -> list[tuple[str, dict]]:
        """(system, primary summary), best mean first; systems with no finished fold left out."""
        out = [(name, s["summary"][task.primary_key]) for name, s in entry["systems"].items()]
        return sorted((x for x in out if x[1]["n_folds"] > 0), key=lambda x: (-x[1]["mean"], x[0]))

    def _display(self, task: TaskSpec, entry: dict) -> dict[str, float]:
        """The task parent's display columns: the best system's across-fold mean, CI and folds."""
        ordered = self._ordered(task, entry)
        if not ordered or ordered[0][1]["n_folds"] < 2:
            return {}
        best = ordered[0][1]
        return display_metrics(best["mean"], best["ci_low"], best["ci_high"], best["n_folds"])

    def _ranking(self, task: TaskSpec, entry: dict, letters: dict[str, str]) -> dict[str, str]:
        ordered = self._ordered(task, entry)
        if not ordered:
            return {}
        ranking = " > ".join(
            f"{name} {s['mean']:.3f}" + (f" ({letters[name]})" if name in letters else "") for name, s in ordered
        )
        return {TAG_BEST: ordered[0][0], TAG_RANKING: ranking}

    def _task_entry(self, task: TaskSpec, scores: pd.DataFrame, comparisons: dict[str, Comparison]) -> CVTaskEntry:
        systems = {}
        for system in self.systems:
            part = scores[scores["system"] == system.name]
            per_fold = {f: dict(zip(g["key"], g["value"])) for f, g in part.groupby("fold")}
            systems[system.name] = {
                "description": system.spec.description,
                "search_space": system.space.name,
                "tuned": system.tuned,
                "budget_per_fold": system.spec.num_samples if system.tuned else 0,
                "summary": {
                    key: fold_summary(part[part["key"] == key]["value"].tolist(), key) for key in task_metrics(task)
                },
                "per_fold": per_fold,
                "chosen": {f: c for (t, s, f), c in sorted(self.chosen.items()) if t == task.name and s == system.name}
                if system.tuned
                else {},
                **({"search": self.search[system.name]} if system.name in self.search else {}),
            }
        failures = [f for f in self.failures if f["task"] == task.name]
        return {
            "description": task.description,
            "protocol": task.protocol.model_dump(),
            "primary_metric": task.primary_key,
            "leaky": task.leaky,
            "dataset": {**self.dataset.summary(), **({"cut_by_encoder": self.inputs_cut} if self.inputs_cut else {})},
            "folds": self.folds.summary(),
            "systems": systems,
            "failed_fits": failures,
            "comparison": {k: c.as_dict() for k, c in comparisons.items()},
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }

    def _log_task(self, task: TaskSpec, scores: pd.DataFrame, entry: dict) -> None:
        parent = self.parents[task.name]
        comparison = entry["comparison"].get(task.primary_key)
        letters = comparison["letters"] if comparison else {}
        for system in self.systems:
            run = self.system_run(task, system)
            metrics = {}
            for key, summary in entry["systems"][system.name]["summary"].items():
                base = metric_key(CV_PREFIX, *key.split("/"))
                metrics.update({f"{base}_{k}": v for k, v in summary.items() if v == v})
            primary = entry["systems"][system.name]["summary"][task.primary_key]
            if primary["n_folds"] > 1:
                metrics.update(
                    display_metrics(primary["mean"], primary["ci_low"], primary["ci_high"], primary["n_folds"])
                )
            metrics.update(search_metrics(entry["systems"][system.name].get("search")))
            self.tracker.log(run, metrics=metrics, tags={TAG_GROUP: letters.get(system.name, "")} if letters else None)
            self.tracker.end(run)
        metrics, tags = self._display(task, entry), {}
        if comparison:
            tags = {"comparison_test": comparison["test"], "comparison_reason": comparison["reason"]}
            for p in comparison["pairs"]:
                base = f"compare.{p['a']}.vs.{p['b']}"
                metrics.update(
                    {
                        f"{base}.difference": p["difference"],
                        f"{base}.ci_low": p["ci_low"],
                        f"{base}.ci_high": p["ci_high"],
                        f"{base}.p_adj": p["p_adj"],
                    }
                )
        tags.update(self._ranking(task, entry, letters))
        self.tracker.log(parent, metrics={k: v for k, v in metrics.items() if v == v}, tags=tags)
        self.tracker.log_text(parent, json.dumps(entry, indent=2, default=float), COMPARISON_ARTIFACT)
        self.tracker.log_text(
            parent,
            yaml.safe_dump(
                {s.name: {"search_space": s.space.name, "tuned": s.tuned, "base": s.space.base} for s in self.systems}
            ),
            "systems.yaml",
        )
        self.tracker.end(parent, "FINISHED" if not scores.empty else "FAILED")
