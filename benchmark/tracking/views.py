"""Saved views of the MLflow UI: the task parents and, under repeated CV, one row per (task, system).

MLflow 3's runs table shows no metric column until the user picks one, and every benchmark
experiment mixes task parents, trials, fits and finals. After a run, the suite stores MLflow's
own shared-view state on the experiment (the tag the UI's "Share" button writes), so one link
opens the experiment filtered to the runs worth comparing: `#/experiments/<id>/runs?viewStateShareKey=<view>`.

What a user must read without clicking is logged for the views (core/names.py, DISPLAY_*): short metric
names (`mean`, `mean_lo95`, `mean_up95`, `n`) holding the primary metric rounded to 3 decimals,
the metric's name in the `primary_metric` tag, and tags `best`, `ranking` and `group` in words. The
full-precision values stay under `test.*` and `cv.*`. System runs are top-level runs (not children of
the task parent), so the systems view lists them flat, best first, instead of collapsed under parents.
"""

from __future__ import annotations

import json

from benchmark.core.names import (
    DISPLAY_HIGH,
    DISPLAY_LOW,
    DISPLAY_N,
    DISPLAY_VALUE,
    STAGE_SYSTEM,
    STAGE_TASK,
    TAG_BEST,
    TAG_GROUP,
    TAG_PRIMARY,
    TAG_RANKING,
    TAG_RETRIEVAL,
    TAG_SPLIT,
    TAG_STAGE,
    TAG_TASK,
)
from benchmark.tracking.store import _retry_locked

#: experiment tag prefix MLflow's UI reads shared views from (mlflow/server/js: SHARE_VIEW_STATE_TAG_PREFIX)
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_TASKS = "benchmark-tasks"
VIEW_SYSTEMS = "benchmark-systems"
DISPLAY_COLUMNS = (DISPLAY_VALUE, DISPLAY_LOW, DISPLAY_HIGH, DISPLAY_N)


def view_url(experiment_id: str, view: str) -> str:
    """The UI route of a saved view (append to the tracking server's address). `workflowType` opens MLflow 3's
    navigation for model training (runs, models) instead of its GenAI default (traces, judges, prompts)."""
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={view}&workflowType=machine_learning"


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's canonical column key


# The UI cuts tag cells at about 13 characters (run names at about 17) and keeps no column widths in a view, so
# the views show short tags that tell rows apart (split, retrieval) rather than long task names.


def task_columns() -> list[str]:
    """Task parents (named after the task): the best system, the rounded value, CI and n, the ranking in words."""
    tags = [TAG_SPLIT, TAG_RETRIEVAL, TAG_BEST, TAG_RANKING, TAG_PRIMARY]
    return [_column("metrics", m) for m in DISPLAY_COLUMNS] + [_column("tags", t) for t in tags]


def system_columns() -> list[str]:
    """One row per (task, system), named after the system: the across-fold mean of the primary metric, its CI,
    the folds, and which task (split, retrieval) and letter."""
    tags = [TAG_SPLIT, TAG_RETRIEVAL, TAG_GROUP, TAG_TASK, TAG_PRIMARY]
    return [_column("metrics", m) for m in DISPLAY_COLUMNS] + [_column("tags", t) for t in tags]


def state(search_filter: str, columns: list[str], order_by: str = "attributes.start_time") -> dict:
    return {
        "searchFilter": search_filter,
        "orderByKey": order_by,
        "orderByAsc": False,
        "selectedColumns": columns,
        "runsExpanded": {},
    }


def save_views(tracker, cv: bool) -> dict[str, str]:
    """Store the views on the run's experiment; returns view name -> UI route."""

    client, experiment = tracker.client, tracker.experiment_id
    views = {VIEW_TASKS: (STAGE_TASK, task_columns(), "attributes.start_time")}
    if cv:  # best first: one column holds every row's primary metric, so sorting by it ranks the systems
        views[VIEW_SYSTEMS] = (STAGE_SYSTEM, system_columns(), _column("metrics", DISPLAY_VALUE))
    out = {}
    for name, (stage, columns, order_by) in views.items():
        # the view shows every run of that stage in the experiment (all runs of the suite), not only this one
        view = state(f"tags.{TAG_STAGE} = '{stage}'", columns, order_by)
        _retry_locked(
            lambda n=name, v=view: client.set_experiment_tag(experiment, SHARED_VIEW_PREFIX + n, json.dumps(v))
        )
        out[name] = view_url(experiment, name)
    return out
