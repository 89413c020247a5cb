"""Saved views of the MLflow UI: the task parents (and, under repeated CV, the systems) with their CI columns.

MLflow 3's runs table shows no metric column until the user picks one, and every benchmark
experiment mixes task parents, trials, fits and finals. After a run, the suite stores MLflow's
own shared-view state on the experiment (the tag the UI's "Share" button writes), so one link
opens the experiment filtered to the runs worth comparing, with their means and 95% CIs as
columns: `#/experiments/<id>/runs?viewStateShareKey=<view>`.
"""

from __future__ import annotations

import json

from benchmark.core.names import (
    CV_PREFIX,
    STAGE_SYSTEM,
    STAGE_TASK,
    TAG_PRIMARY,
    TAG_RUN_UID,
    TAG_STAGE,
    TAG_SYSTEM,
    TAG_TASK,
    TEST_PREFIX,
    metric_key,
)
from benchmark.tracking.store import _retry_locked

#: experiment tag prefix MLflow's UI reads shared views from (mlflow/server/js: SHARE_VIEW_STATE_TAG_PREFIX)
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_TASKS = "benchmark-tasks"
VIEW_SYSTEMS = "benchmark-systems"
CI_SUFFIXES = ("", "_ci_low", "_ci_high", "_n")
CV_SUFFIXES = ("_mean", "_ci_low", "_ci_high", "_n_folds")
COMPARE_SUFFIXES = (".difference", ".ci_low", ".ci_high", ".p_adj")


def view_url(experiment_id: str, view: str) -> str:
    """The UI route of a saved view (append to the tracking server's address)."""
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={view}"


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's canonical column key


def task_columns(primary_keys: list[str], metric_names: set[str]) -> list[str]:
    """The primary metric with its 95% CI and n (holdout finals) or the system comparisons (repeated CV)."""
    metrics = [metric_key(TEST_PREFIX, *key.split("/")) + s for key in primary_keys for s in CI_SUFFIXES]
    metrics += sorted(
        m for m in metric_names if m.startswith("compare.") and ".vs." in m and m.endswith(COMPARE_SUFFIXES)
    )
    return [_column("tags", TAG_PRIMARY)] + [_column("metrics", m) for m in dict.fromkeys(metrics) if m in metric_names]


def system_columns(primary_keys: list[str], metric_names: set[str]) -> list[str]:
    metrics = [metric_key(CV_PREFIX, *key.split("/")) + s for key in primary_keys for s in CV_SUFFIXES]
    return [_column("tags", TAG_TASK), _column("tags", TAG_SYSTEM)] + [
        _column("metrics", m) for m in dict.fromkeys(metrics) if m in metric_names
    ]


def state(search_filter: str, columns: list[str]) -> dict:
    return {
        "searchFilter": search_filter,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": columns,
        "runsExpanded": {},
    }


def save_views(tracker, run_uid: str, primary_keys: list[str], cv: bool) -> dict[str, str]:
    """Store the views of this run on its experiment; returns view name -> UI route."""

    client, experiment = tracker.client, tracker.experiment_id
    views = {VIEW_TASKS: (STAGE_TASK, task_columns)}
    if cv:
        views[VIEW_SYSTEMS] = (STAGE_SYSTEM, system_columns)
    out = {}
    for name, (stage, columns_of) in views.items():
        search = f"tags.{TAG_RUN_UID} = '{run_uid}' and tags.{TAG_STAGE} = '{stage}'"
        runs = _retry_locked(lambda s=search: client.search_runs([experiment], filter_string=s, max_results=1000))
        names = {m for r in runs for m in r.data.metrics}
        # the view shows every run of that stage in the experiment (all runs of the suite), not only this one
        view = state(f"tags.{TAG_STAGE} = '{stage}'", columns_of(primary_keys, names))
        _retry_locked(
            lambda n=name, v=view: client.set_experiment_tag(experiment, SHARED_VIEW_PREFIX + n, json.dumps(v))
        )
        out[name] = view_url(experiment, name)
    return out
