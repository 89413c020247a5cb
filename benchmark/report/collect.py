"""Collect a report's data: every finished task of the chosen experiments, read from MLflow only."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from benchmark.core.errors import BenchmarkError, UnknownNameError
from benchmark.core.names import (
    HOLDOUT,
    STAGE_TASK,
    STAGE_TRIAL,
    TAG_CHOSEN_CONFIG,
    TAG_FINAL_SEEDS,
    TAG_FOLD,
    TAG_LEAKY,
    TAG_PRIMARY,
    TAG_PROTOCOL,
    TAG_SPLIT_CHECKSUM,
    TAG_SUPERSEDED,
    TAG_TASK,
    TAG_TEXT_FIELD,
)
from benchmark.report.base import ReportData, Row, _all_runs, _metrics_of, _primary_values, _trial_frame, dataset_line
from benchmark.report.cv import collect_cv
from benchmark.report.markdown import _nan_low, _versus
from benchmark.tracking.store import check_reachable, check_tracking_uri

log = logging.getLogger(__name__)


def collect(tracking_uri: str, experiments: list[str] | None = None, workdir: Path | None = None) -> ReportData:
    """Finished task runs (bridge and untrained-heads rows), trial runs, and the artifacts the report needs."""

    from mlflow.tracking import MlflowClient  # mlflow: heavy, imported only when the store is read or written

    check_tracking_uri(tracking_uri)
    if urlparse(tracking_uri).scheme == "sqlite":  # reading a missing sqlite store would create an empty one
        db = Path(tracking_uri[len("sqlite:///") :])
        if not db.is_file():
            raise BenchmarkError(
                f"no MLflow store at {db} (from --tracking-uri {tracking_uri}); run `python -m "
                "benchmark run` first or point --tracking-uri at an existing store"
            )
    check_reachable(tracking_uri)  # a server that does not answer, a store that cannot be read: one line, at once
    client = MlflowClient(tracking_uri)
    found = client.search_experiments()
    if experiments:
        missing = sorted(set(experiments) - {e.name for e in found})
        if missing:
            raise UnknownNameError("experiment", missing[0], [e.name for e in found])
        chosen = [e for e in found if e.name in experiments]
    else:
        chosen = [e for e in found if e.name.startswith("benchmark-")]
    if not chosen:
        raise BenchmarkError(f"no benchmark experiments in {tracking_uri}; run `python -m benchmark run` first")
    ids = [e.experiment_id for e in sorted(chosen, key=lambda e: e.name)]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="benchmark-report-"))

    cv_tasks = collect_cv(client, {e.experiment_id: e.name for e in chosen})
    parents = [
        r
        for r in _all_runs(client, ids, STAGE_TASK)
        if r.info.status == "FINISHED"
        and r.data.tags.get(TAG_PROTOCOL, HOLDOUT) == HOLDOUT
        and any(k.startswith("test.") for k in r.data.metrics)
    ]
    rows: dict[str, list[Row]] = {}
    artifacts: dict[str, Path] = {}
    seen: dict[tuple, Row] = {}
    datasets: dict[str, str] = {}
    skipped: list[str] = []
    for run in parents:  # oldest first: a later run of the same system replaces the earlier one
        tags = run.data.tags
        task, primary = tags[TAG_TASK], tags[TAG_PRIMARY]
        datasets[task] = dataset_line(run) or datasets.get(task, "")
        modes = {primary.split("/")[0]} | {
            m for m in ("text_to_molecule", "molecule_to_text", "text_to_molecule_grouped", "molecule_to_text_grouped")
        }
        try:
            local = Path(client.download_artifacts(run.info.run_id, "per_query_ranks.parquet", str(workdir)))
        except Exception as exc:  # a deleted or never-written artifact: this run is left out, the rest is reported
            skipped.append(
                f"{task} (run {run.info.run_id}): its artifact per_query_ranks.parquet cannot be read "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
            )
            continue
        frame_path = workdir / f"{run.info.run_id}.parquet"
        local.rename(frame_path)
        frame = pd.read_parquet(frame_path)
        for kind, prefix, system in (("bridge", "test", "bridge"), ("untrained heads", "baseline.test", "untrained")):
            params = run.data.params
            encoders = f"{params.get('chosen.mol_encoder.name', '?')}+{params.get('chosen.text_encoder.name', '?')}"
            label = (
                tags.get(TAG_CHOSEN_CONFIG, "?")
                if kind == "bridge"
                else f"{encoders}, {params.get('chosen.bridge.head', '?')} heads"
            )
            if tags.get(TAG_TEXT_FIELD, "text_rich") != "text_rich":
                label += f" [{tags['text_field']}]"
            row = Row(
                task,
                label,
                kind,
                run.info.run_id,
                tags.get(TAG_LEAKY) == "True",
                primary,
                tags.get(TAG_TEXT_FIELD, "text_rich"),
                tags.get(TAG_FINAL_SEEDS, ""),
                tags.get(TAG_SPLIT_CHECKSUM, ""),
                _metrics_of(run, prefix, modes),
                _primary_values(frame, system, primary),
            )
            seen[(task, kind, label)] = row
        try:
            artifacts[f"heatmap:{run.info.run_id}"] = Path(
                client.download_artifacts(run.info.run_id, "cosine_heatmap.png", str(workdir / run.info.run_id))
            )
        except Exception:
            pass
        artifacts[f"queries:{run.info.run_id}"] = frame_path
    for (task, _, _), row in sorted(seen.items()):
        rows.setdefault(task, []).append(row)
    for task, task_rows in rows.items():
        task_rows.sort(key=lambda r: (-_nan_low(r.value()), r.kind != "bridge", r.system))
        for upper, lower in zip(task_rows, task_rows[1:]):
            upper.versus_next = _versus(upper, lower)
    text_fields = {
        r.info.run_id: r.data.tags.get(TAG_TEXT_FIELD, "text_rich") for r in _all_runs(client, ids, STAGE_TASK)
    }
    # tuning trials of repeated CV belong to one study per fold, not to one study per task: not drawn as histories
    # (a trial lost from Ray Tune's saved state by a kill is kept in MLflow as superseded: not drawn)
    holdout_trials = [
        r
        for r in _all_runs(client, ids, STAGE_TRIAL)
        if TAG_FOLD not in r.data.tags and r.data.tags.get(TAG_SUPERSEDED) != "true"
    ]
    trials = _trial_frame(holdout_trials, text_fields)
    for line in skipped:
        log.warning("report: skipped %s", line)
    in_progress = _in_progress(client, ids, {e.experiment_id: e.name for e in chosen})
    return ReportData(rows, trials, artifacts, [e.name for e in chosen], cv_tasks, datasets, skipped, in_progress)


def _in_progress(client, ids: list[str], names: dict[str, str]) -> list[str]:
    """Task runs still RUNNING: a suite at work on this store (or one cut off before it finished)."""
    lines = []
    for run in _all_runs(client, ids, STAGE_TASK):
        if run.info.status == "RUNNING":
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000))
            lines.append(
                f"{run.data.tags.get(TAG_TASK, run.info.run_name)} ({names.get(run.info.experiment_id, '?')}, started "
                f"{started}): still running, or cut off (then `run --resume` finishes it); report again when it ends"
            )
    return sorted(lines)
