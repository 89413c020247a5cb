"""Leaderboards from MLflow: markdown, self-contained HTML, plots, and a side-by-side with the paper.

Everything is read from MLflow (runs, their metrics, tags and artifacts); nothing is retrained.
The same runs give byte-identical markdown: rows are sorted deterministically and the text holds
no timestamps or temporary paths.
"""

from __future__ import annotations

import logging
import base64
import html
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.bootstrap import paired_bootstrap
from benchmark.errors import BenchmarkError
from benchmark.names import (HOLDOUT, STAGE_TASK, STAGE_TRIAL, TAG_CHOSEN_CONFIG, TAG_FINAL_SEEDS, TAG_FOLD, TAG_LEAKY,
                             TAG_PRIMARY, TAG_PROTOCOL, TAG_RUN_UID, TAG_SPLIT_CHECKSUM, TAG_STAGE, TAG_STATUS, TAG_TASK,
                             TAG_TEXT_FIELD, TAG_TRIAL_ID, metric_key)

PAPER_TABLE1 = [
    # setting, recall@1, mrr, grouped recall@1, our task (and what of it) that corresponds
    ("Frozen encoders (ChemBERTa + PubMedBERT)", 0.001, 0.003, None, ("paper-pair-global", "baseline")),
    ("Frozen encoders (ChemBERTa + S-Biomed)", 0.000, 0.003, None, None),
    ("Contrastive bridge (ChemBERTa + PubMedBERT)", 0.188, 0.338, 0.098, None),
    ("ECFP4 + text_rich bridge", 0.762, 0.863, None, ("paper-pair-global", "bridge")),
    ("Scaffold split (ECFP4 + text_rich)", 0.150, 0.228, 0.317, ("paper-scaffold-global", "bridge")),
]
DIFFERENCES = [
    "Data: an offline ChEMBL snapshot mixing releases (2,464 cleaned pairs, salt forms collapsed onto one "
    "structure) instead of ChEMBL 28 (3,030 pairs).",
    "Text encoder: all-MiniLM-L6-v2 (offline); PubMedBERT, S-Biomed-RoBERTa and ChemBERTa need the model hub, "
    "unreachable where these numbers were made.",
    "Frozen baseline: the paper's frozen encoders have no shared space; here the frozen baseline is the same "
    "bridge with untrained heads (same encoders, same seeds).",
    "Split: the paper's non-scaffold setting is matched by the pair-level split, which is LEAKY (a molecule can "
    "sit in train and test); galleries hold the unique items of the test side only.",
    "Numbers here are means over 3 seeds with 95% bootstrap CIs over test queries; the paper gives point values.",
]

log = logging.getLogger(__name__)


@dataclass
class Row:
    task: str
    system: str
    kind: str  # bridge | untrained heads
    run_id: str
    leaky: bool
    primary: str  # e.g. text_to_molecule_grouped/recall@1
    text_field: str
    seeds: str
    split_checksum: str = ""
    metrics: dict[str, dict] = field(default_factory=dict)  # "mode/metric" -> {value, ci_low, ci_high, n, n_groups}
    per_query: pd.Series | None = None
    versus_next: str = ""

    def value(self, key: str | None = None) -> float:
        return self.metrics.get(key or self.primary, {}).get("value", float("nan"))


def _all_runs(client, experiment_ids: list[str], stage: str) -> list:
    return search_all(client, experiment_ids, f"tags.{TAG_STAGE} = '{stage}'")


def search_all(client, experiment_ids: list[str], filter_string: str) -> list:
    """Every run matching `filter_string`, oldest first, page by page."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000,
                                  page_token=token, order_by=["attributes.start_time ASC"])
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _metrics_of(run, prefix: str, modes: Iterable[str]) -> dict[str, dict]:
    data = run.data.metrics
    out = {}
    for mode in modes:
        for metric in ("recall@1", "recall@5", "recall@10", "mrr"):
            key = f"{prefix}.{metric_key(mode, metric)}"
            if key in data:
                out[f"{mode}/{metric}"] = {"value": data[key], "ci_low": data.get(f"{key}_ci_low"),
                                           "ci_high": data.get(f"{key}_ci_high"), "n": data.get(f"{key}_n"),
                                           "n_groups": data.get(f"{key}_n_groups")}
    return out


def _primary_values(frame: pd.DataFrame, system: str, primary: str) -> pd.Series:
    mode, metric = primary.split("/")
    part = frame[(frame["system"] == system) & (frame["mode"] == mode)].copy()
    if metric == "mrr":
        part["v"] = 1.0 / part["rank"]
    else:
        part["v"] = (part["rank"] <= int(metric.split("@")[1])).astype(float)
    keys = ["group", "query"] if "group" in part and part["group"].notna().any() else ["query"]
    return part.groupby(keys, dropna=False)["v"].mean().sort_index()


@dataclass
class ReportData:
    rows: dict[str, list[Row]]
    trials: pd.DataFrame
    artifacts: dict[str, Path]
    experiments: list[str]
    cv: list = field(default_factory=list)  # report_cv.CVTask per repeated-CV task
    datasets: dict[str, str] = field(default_factory=dict)  # holdout task -> dataset card line
    skipped: list[str] = field(default_factory=list)  # task runs left out, each with why


def dataset_line(run) -> str:
    """One line of the dataset card that a task's parent run logged as its MLflow input."""
    import json

    inputs = getattr(run, "inputs", None)
    items = list(getattr(inputs, "dataset_inputs", None) or [])
    if not items:
        return ""
    d = items[0].dataset
    profile = json.loads(d.profile or "{}")
    try:
        source = json.loads(d.source).get("uri", d.source)
    except (TypeError, ValueError):
        source = d.source
    return (f"Dataset: **{d.name}** (fingerprint {d.digest}; {profile.get('n_pairs', '?')} pairs, "
            f"{profile.get('n_molecules', '?')} molecules, {profile.get('n_groups', '?')} targets; read from "
            f"{Path(str(source)).name}; ChEMBL data, CC BY-SA 3.0: credit ChEMBL)")


def collect(tracking_uri: str, experiments: list[str] | None = None, workdir: Path | None = None) -> ReportData:
    """Finished task runs (bridge and untrained-heads rows), trial runs, and the artifacts the report needs."""
    from urllib.parse import urlparse

    from mlflow.tracking import MlflowClient

    from benchmark.tracking import check_tracking_uri

    check_tracking_uri(tracking_uri)
    if urlparse(tracking_uri).scheme == "sqlite":  # reading a missing sqlite store would create an empty one
        db = Path(tracking_uri[len("sqlite:///"):])
        if not db.is_file():
            raise BenchmarkError(f"no MLflow store at {db} (from --tracking-uri {tracking_uri}); run `python -m "
                                 "benchmark run` first or point --tracking-uri at an existing store")
    client = MlflowClient(tracking_uri)
    found = client.search_experiments()
    if experiments:
        missing = sorted(set(experiments) - {e.name for e in found})
        if missing:
            from benchmark.errors import UnknownNameError

            raise UnknownNameError("experiment", missing[0], [e.name for e in found])
        chosen = [e for e in found if e.name in experiments]
    else:
        chosen = [e for e in found if e.name.startswith("benchmark-")]
    if not chosen:
        raise BenchmarkError(f"no benchmark experiments in {tracking_uri}; run `python -m benchmark run` first")
    ids = [e.experiment_id for e in sorted(chosen, key=lambda e: e.name)]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="benchmark-report-"))
    from benchmark.report_cv import collect_cv

    cv_tasks = collect_cv(client, {e.experiment_id: e.name for e in chosen})
    parents = [r for r in _all_runs(client, ids, STAGE_TASK) if r.info.status == "FINISHED"
               and r.data.tags.get(TAG_PROTOCOL, HOLDOUT) == HOLDOUT and any(k.startswith("test.") for k in r.data.metrics)]
    rows: dict[str, list[Row]] = {}
    artifacts: dict[str, Path] = {}
    seen: dict[tuple, Row] = {}
    datasets: dict[str, str] = {}
    skipped: list[str] = []
    for run in parents:  # oldest first: a later run of the same system replaces the earlier one
        tags = run.data.tags
        task, primary = tags[TAG_TASK], tags[TAG_PRIMARY]
        datasets[task] = dataset_line(run) or datasets.get(task, "")
        modes = {primary.split("/")[0]} | {m for m in ("text_to_molecule", "molecule_to_text",
                                                        "text_to_molecule_grouped", "molecule_to_text_grouped")}
        try:
            local = Path(client.download_artifacts(run.info.run_id, "per_query_ranks.parquet", str(workdir)))
        except Exception as exc:  # a deleted or never-written artifact: this run is left out, the rest is reported
            skipped.append(f"{task} (run {run.info.run_id}): its artifact per_query_ranks.parquet cannot be read "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})")
            continue
        frame_path = workdir / f"{run.info.run_id}.parquet"
        local.rename(frame_path)
        frame = pd.read_parquet(frame_path)
        for kind, prefix, system in (("bridge", "test", "bridge"), ("untrained heads", "baseline.test", "untrained")):
            params = run.data.params
            encoders = f"{params.get('chosen.mol_encoder.name', '?')}+{params.get('chosen.text_encoder.name', '?')}"
            label = tags.get(TAG_CHOSEN_CONFIG, "?") if kind == "bridge" else \
                f"{encoders}, {params.get('chosen.bridge.head', '?')} heads"
            if tags.get(TAG_TEXT_FIELD, "text_rich") != "text_rich":
                label += f" [{tags['text_field']}]"
            row = Row(task, label, kind, run.info.run_id, tags.get(TAG_LEAKY) == "True", primary,
                      tags.get(TAG_TEXT_FIELD, "text_rich"), tags.get(TAG_FINAL_SEEDS, ""), tags.get(TAG_SPLIT_CHECKSUM, ""),
                      _metrics_of(run, prefix, modes), _primary_values(frame, system, primary))
            seen[(task, kind, label)] = row
        try:
            artifacts[f"heatmap:{run.info.run_id}"] = Path(client.download_artifacts(run.info.run_id, "cosine_heatmap.png", str(workdir / run.info.run_id)))
        except Exception:
            pass
        artifacts[f"queries:{run.info.run_id}"] = frame_path
    for (task, _, _), row in sorted(seen.items()):
        rows.setdefault(task, []).append(row)
    for task, task_rows in rows.items():
        task_rows.sort(key=lambda r: (-_nan_low(r.value()), r.kind != "bridge", r.system))
        for upper, lower in zip(task_rows, task_rows[1:]):
            upper.versus_next = _versus(upper, lower)
    text_fields = {r.info.run_id: r.data.tags.get(TAG_TEXT_FIELD, "text_rich") for r in _all_runs(client, ids, STAGE_TASK)}
    # tuning trials of repeated CV belong to one study per fold, not to one study per task: not drawn as histories
    holdout_trials = [r for r in _all_runs(client, ids, STAGE_TRIAL) if TAG_FOLD not in r.data.tags]
    trials = _trial_frame(holdout_trials, text_fields)
    for line in skipped:
        log.warning("report: skipped %s", line)
    return ReportData(rows, trials, artifacts, [e.name for e in chosen], cv_tasks, datasets, skipped)


def _nan_low(value: float) -> float:
    return -math.inf if value != value else value


def _versus(upper: Row, lower: Row) -> str:
    a, b = upper.per_query, lower.per_query
    if a is None or b is None or len(a) == 0 or not a.index.equals(b.index):
        return "n/a"
    groups = a.index.get_level_values("group").to_numpy() if "group" in (a.index.names or []) else None
    diff = paired_bootstrap(a.to_numpy(), b.to_numpy(), groups=groups, seed=0)
    return f"{'yes' if diff.ci_low > 0 else 'no'} (p={diff.p_value:.3f})"


def _trial_frame(runs: list, text_fields: dict[str, str]) -> pd.DataFrame:
    records = []
    for run in runs:
        tags = run.data.tags
        record = {"task": tags.get(TAG_TASK), "trial_id": tags.get(TAG_TRIAL_ID),
                  "text_field": text_fields.get(tags.get("mlflow.parentRunId", ""), "text_rich"),
                  "run_uid": tags.get(TAG_RUN_UID, ""), "status": tags.get(TAG_STATUS), "start": run.info.start_time,
                  "objective": run.data.metrics.get("objective")}
        for key, value in run.data.params.items():
            record[f"param.{key}"] = value
        for key, value in run.data.metrics.items():
            if key.startswith("val."):
                record[key] = value
        records.append(record)
    frame = pd.DataFrame(records)
    return frame.sort_values(["task", "start", "trial_id"]).reset_index(drop=True) if len(frame) else frame


# ---------------------------------------------------------------- rendering

def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None or entry["value"] != entry["value"]:
        return "-"
    if entry.get("ci_low") is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def _n(entry: dict | None) -> str:
    if not entry or entry.get("n") is None:
        return "-"
    groups = entry.get("n_groups")
    return f"{int(entry['n'])}" + (f" / {int(groups)}" if groups is not None and groups == groups else "")


def _columns(primary: str) -> list[str]:
    mode = primary.split("/")[0]
    others = ["recall@1", "mrr"] if mode.endswith("_grouped") else ["recall@1", "recall@5", "recall@10", "mrr"]
    return [primary] + [f"{mode}/{m}" for m in others if f"{mode}/{m}" != primary]


def task_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    primary = rows[0].primary
    cols = _columns(primary)
    header = ["#", "system", f"{primary} (95% CI)"] + [c.split("/")[1] for c in cols[1:]] + \
        ["n queries / groups", "seeds", "better than next"]
    body = []
    for i, row in enumerate(rows, 1):
        leak = " (LEAKY split)" if row.leaky else ""
        body.append([str(i), f"{row.kind}: {row.system}{leak}"]
                    + [_fmt(row.metrics.get(c)) for c in cols] + [_n(row.metrics.get(primary)), row.seeds or "-",
                                                                   row.versus_next or "-"])
    return header, body


def _md_table(header: list[str], body: list[list[str]]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def paper_comparison(data: ReportData) -> tuple[list[str], list[list[str]], bool]:
    header = ["setting (paper)", "paper R@1", "paper MRR", "paper grouped R@1", "this suite R@1", "this suite MRR",
              "this suite grouped R@1", "task"]
    body, any_found = [], False

    def best(task: str, kind: str) -> Row | None:
        candidates = [r for r in data.rows.get(task, []) if r.kind == kind]
        return candidates[0] if candidates else None

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    for setting, r1, mrr, grouped, ours in PAPER_TABLE1:
        cells = [setting, f(r1), f(mrr), f(grouped)]
        if ours is None:
            body.append(cells + ["not measured (needs the model hub)", "-", "-", "-"])
            continue
        task, what = ours
        row = best(task, "bridge" if what == "bridge" else "untrained heads")
        if row is None:
            body.append(cells + ["not run: `python -m benchmark run --suite paper`", "-", "-", task])
            continue
        any_found = True
        g_row = best(task.replace("-global", "-grouped"), row.kind) if grouped is not None else None
        g = _fmt(g_row.metrics.get("text_to_molecule_grouped/recall@1")) if g_row else "-"
        leak = " (LEAKY pair split)" if row.leaky else ""
        body.append(cells + [_fmt(row.metrics.get("text_to_molecule/recall@1")),
                             _fmt(row.metrics.get("text_to_molecule/mrr")), g, f"{task}{leak}, {row.kind}"])
    return header, body, any_found


def _cv_markdown(data: ReportData, images: dict[str, str]) -> list[str]:
    from benchmark.report_cv import leaderboard, method_note, pair_table

    if not data.cv:
        return []
    out = ["## Repeated cross-validation", "",
           "Systems compared fold by fold on the same folds (Ash et al. 2025): no best mean in bold; systems that share "
           "a letter are statistically indistinguishable.", ""]
    for task in data.cv:
        out += [f"### {task.task} ({task.experiment})", "", task.description, ""]
        out += [task.dataset, ""] if task.dataset else []
        if task.comparison is None:
            out += ["No comparison: fewer than two systems or three folds finished.", ""]
            continue
        out += [_md_table(*leaderboard(task)), "", method_note(task), "", _md_table(*pair_table(task)), ""]
        for name, caption in images.items():
            if name.startswith("cv_") and name.endswith(f"_{task.task}.png"):
                out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return out


def render_markdown(data: ReportData, images: dict[str, str]) -> str:
    out = ["# Leaderboard: drug-text alignment", "",
           f"Generated by `python -m benchmark report` from MLflow experiments: {', '.join(sorted(data.experiments))}.", ""]
    if data.skipped:
        out += ["**Skipped** (not in the tables below):", ""] + [f"- {line}" for line in data.skipped] + [""]
    out += _cv_markdown(data, images)
    if data.rows:
        out += ["## Holdout tasks", "",
                "Test metrics are means over the final seeds with 95% bootstrap CIs; every configuration was chosen on "
                "validation data. 'better than next': a paired bootstrap of this row against the row below on the same "
                "test queries (yes when the 95% CI of the difference excludes 0).", ""]
    for task in sorted(data.rows):
        rows = data.rows[task]
        leak = " ⚠ LEAKY split (molecules shared between train and test)" if rows[0].leaky else ""
        out += [f"### {task}{leak}", ""] + ([data.datasets[task], ""] if data.datasets.get(task) else [])
        out += [_md_table(*task_table(rows)), ""]
    header, body, _ = paper_comparison(data)
    out += ["## Side by side with the paper (Tupakula 2025, Table 1)", "", _md_table(header, body), "",
            "What differs:", ""] + [f"- {d}" for d in DIFFERENCES] + [""]
    holdout_images = {n: c for n, c in images.items() if not n.startswith("cv_")}
    if holdout_images:
        out += ["## Figures (holdout tasks)", ""]
        for name, caption in holdout_images.items():
            out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}.leaky{color:#b00020;font-weight:600}figure{margin:1.5rem 0}
img{max-width:100%;border:1px solid #eee}figcaption{font-style:italic;font-size:.85rem}"""


def render_html(data: ReportData, images: dict[str, str], folder: Path) -> str:
    def table(header, body):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"

    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Leaderboard: drug-text alignment</title>",
             f"<style>{CSS}</style></head><body><h1>Leaderboard: drug-text alignment</h1>",
             f"<p>From MLflow experiments {html.escape(', '.join(sorted(data.experiments)))}. Test metrics: seed means "
             "with 95% bootstrap CIs; configurations chosen on validation data.</p>"]
    if data.skipped:
        parts.append("<p><strong>Skipped</strong> (not in the tables below):</p><ul>"
                     + "".join(f"<li>{html.escape(line)}</li>" for line in data.skipped) + "</ul>")
    def figure(name: str, caption: str) -> str:
        encoded = base64.b64encode((folder / name).read_bytes()).decode()
        return (f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{encoded}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    if data.cv:
        from benchmark.report_cv import leaderboard, method_note, pair_table

        parts.append("<h2>Repeated cross-validation</h2><p>Systems sharing a letter are statistically "
                     "indistinguishable; no best mean in bold.</p>")
        for task in data.cv:
            parts.append(f"<h3>{html.escape(task.task)} ({html.escape(task.experiment)})</h3>")
            if task.dataset:
                parts.append(f"<p>{html.escape(task.dataset.replace('**', ''))}</p>")
            if task.comparison is None:
                parts.append("<p>No comparison: fewer than two systems or three folds finished.</p>")
                continue
            parts += [table(*leaderboard(task)), f"<p>{html.escape(method_note(task).replace('**', ''))}</p>",
                      table(*pair_table(task))]
            parts += [figure(n, c) for n, c in images.items() if n.startswith("cv_") and n.endswith(f"_{task.task}.png")]
    for task in sorted(data.rows):
        rows = data.rows[task]
        leak = " <span class='leaky'>⚠ LEAKY split</span>" if rows[0].leaky else ""
        card = f"<p>{html.escape(data.datasets[task].replace('**', ''))}</p>" if data.datasets.get(task) else ""
        parts.append(f"<h2>{html.escape(task)}{leak}</h2>" + card + table(*task_table(rows)))
    header, body, _ = paper_comparison(data)
    parts.append("<h2>Side by side with the paper (Table 1)</h2>" + table(header, body))
    parts.append("<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in DIFFERENCES) + "</ul>")
    parts += [figure(n, c) for n, c in images.items() if not n.startswith("cv_")]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- figures

def _save(fig, folder: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    # plots have few colours: a 256-colour palette keeps them sharp at a third of the size (the HTML embeds them)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(256).save(folder / name, format="PNG", optimize=True)
    return name


def _as_float(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def _studies(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One study per (benchmark run, task group): its trials appear under every task of the split, kept once."""
    out: dict[str, pd.DataFrame] = {}
    seen: list[frozenset] = []
    if trials.empty:
        return out
    groups = sorted(trials.groupby(["run_uid", "task"], dropna=False), key=lambda kv: (kv[0][0], -len(kv[1]), kv[0][1]))
    for (run_uid, task), part in groups:  # per study, the task that kept the most trial runs
        ids = frozenset(part["trial_id"])
        if any(ids & other for other in seen):  # the same study under another task (a trial run deleted or not)
            continue
        seen.append(ids)
        name = task if (trials["task"] == task).sum() == len(part) else f"{task} {run_uid}"
        out[name] = part.sort_values(["start", "trial_id"]).reset_index(drop=True)
    return out


def figures(data: ReportData, folder: Path, practical: float | None = None) -> dict[str, str]:
    import shutil

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmark import report_cv

    images: dict[str, str] = {}
    for task in data.cv:
        if task.comparison is not None:
            images.update(report_cv.figures(task, folder, report_cv.PRACTICAL_DIFFERENCE if practical is None else practical))
    # one heatmap and one Recall@k figure per (split, text field, system): global tasks first
    best_bridges, shown = {}, set()
    for task, rows in sorted(data.rows.items(), key=lambda kv: (kv[1][0].primary.split("/")[0].endswith("_grouped"), kv[0])):
        row = next((r for r in rows if r.kind == "bridge"), None)
        key = None if row is None else (row.split_checksum, row.text_field, row.system)
        if row is not None and key not in shown:
            shown.add(key)
            best_bridges[task] = row
    for task, row in sorted(best_bridges.items()):
        source = data.artifacts.get(f"heatmap:{row.run_id}")
        if source and source.exists():
            name = f"heatmap_{task}.png"
            shutil.copyfile(source, folder / name)
            images[name] = f"{task}: cosine similarity of the first 40 test pairs, untrained heads (left) and trained bridge (right)"
    for task, row in sorted(best_bridges.items()):
        frame = pd.read_parquet(data.artifacts[f"queries:{row.run_id}"])
        first_seed = sorted(frame["seed"].unique())[0]
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for mode, label in (("text_to_molecule", "global"), ("text_to_molecule_grouped", "within target")):
            ranks = frame[(frame["system"] == "bridge") & (frame["mode"] == mode) & (frame["seed"] == first_seed)]["rank"]
            if len(ranks):
                ks = np.arange(1, 51)
                ax.plot(ks, [(ranks <= k).mean() for k in ks], marker=".", label=f"{label} (n={len(ranks)})")
        ax.set(xlabel="k", ylabel="Recall@k", ylim=(0, 1.02), title=f"{task}: cumulative match, text to molecule")
        ax.grid(alpha=0.3)
        ax.legend()
        images[_save(fig, folder, f"recall_at_k_{task}.png")] = f"{task}: Recall@k, global vs within-target (seed {first_seed})"
    grouped_metric = "val.text_to_molecule_grouped.recall_at_1"
    if not data.trials.empty and grouped_metric in data.trials:
        unique = data.trials.drop_duplicates("trial_id")
        unique = unique[(unique["status"] == "finished") & (unique["text_field"] == "text_rich")]
        for param, label in (("param.loss.temperature", "temperature T"), ("param.loss.margin", "margin m")):
            if param not in unique:
                continue
            values = pd.DataFrame({"x": _as_float(unique[param]), "y": unique[grouped_metric]}).dropna()
            if values["x"].nunique() < 2:
                continue
            if values["x"].nunique() > 6:  # sampled on a continuous range: quartile bins
                bins = pd.qcut(values["x"], 4, duplicates="drop")
                values["x"] = bins.map(lambda b: f"{b.left:.3g}-{b.right:.3g}").astype(str)
                order = [f"{b.left:.3g}-{b.right:.3g}" for b in bins.cat.categories]
            else:
                order = sorted(values["x"].unique())
                values["x"] = values["x"].map(lambda x: f"{x:g}")
                order = [f"{x:g}" for x in order]
            stats = values.groupby("x")["y"].agg(["mean", "std", "count"]).reindex(order)
            fig, ax = plt.subplots(figsize=(5.5, 3.6))
            ax.bar(list(stats.index), stats["mean"], yerr=stats["std"].fillna(0), capsize=3, color="#4c72b0")
            ax.set(xlabel=label, ylabel="grouped Recall@1 (validation)", title=f"Ablation over {label} (trials per bar: "
                   f"{'/'.join(str(int(c)) for c in stats['count'])})")
            images[_save(fig, folder, f"ablation_{param.split('.')[-1]}.png")] = (
                f"Grouped Recall@1 on validation across {label} (text_rich trials of every study; bars: mean and sd)")
    drug = [(r.text_field, r) for rows in data.rows.values() for r in rows[:1]
            if r.kind == "bridge" and r.primary.startswith("text_to_molecule_grouped")]
    fields = {}
    for text_field, row in drug:
        fields.setdefault(text_field, row)
    if len(fields) >= 2:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        labels = sorted(fields)
        means = [fields[f].value() for f in labels]
        entries = [fields[f].metrics[fields[f].primary] for f in labels]
        err = [[m - e["ci_low"] for m, e in zip(means, entries)], [e["ci_high"] - m for m, e in zip(means, entries)]]
        ns = [_n(e) for e in entries]
        ax.bar([f"{f}\n(n {n})" for f, n in zip(labels, ns)], means, yerr=err, capsize=4,
               color=["#4c72b0", "#dd8452", "#55a868"][: len(labels)])
        ax.set(ylabel="grouped Recall@1 (test, 95% CI)", title="With and without the drug name in the text")
        images[_save(fig, folder, "ablation_drug_name.png")] = (
            "Grouped Recall@1 with and without the drug name (test). Without the name, drugs with the same target "
            "and action share one text: a query has several correct molecules and there are fewer queries (n), so "
            "the bars measure different tasks")
    for task, study in _studies(data.trials).items():
        done = study[study["status"] == "finished"].dropna(subset=["objective"])
        if len(done) < 2:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.plot(range(1, len(done) + 1), done["objective"], "o", label="trial")
        ax.plot(range(1, len(done) + 1), done["objective"].cummax(), "-", label="best so far")
        ax.set(xlabel="trial", ylabel="validation objective", title=f"Optimisation history ({task} study)")
        ax.legend()
        images[_save(fig, folder, f"optuna_history_{task.replace(' ', '_')}.png")] = f"Optuna optimisation history of the {task} study"
        importances = param_importances(done)
        if importances:
            fig, ax = plt.subplots(figsize=(5.5, 0.4 * len(importances) + 1.2))
            names = list(importances)[::-1]
            ax.barh(names, [importances[n] for n in names], color="#55a868")
            ax.set(xlabel="importance (fANOVA)", title=f"Parameter importances ({task} study)")
            images[_save(fig, folder, f"optuna_importance_{task.replace(' ', '_')}.png")] = f"Optuna parameter importances of the {task} study"
    return images


def param_importances(trials: pd.DataFrame) -> dict[str, float]:
    """fANOVA importances of the sampled parameters, from an Optuna study rebuilt from MLflow trial runs."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    params = [c for c in trials if c.startswith("param.") and trials[c].nunique(dropna=True) > 1]
    if not params or len(trials) < 3:
        return {}
    distributions = {}
    for column in params:
        numeric = _as_float(trials[column])
        if numeric.notna().all():
            distributions[column[6:]] = FloatDistribution(float(numeric.min()), float(numeric.max()))
        else:
            distributions[column[6:]] = CategoricalDistribution(sorted(trials[column].fillna("none").astype(str).unique()))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for _, trial in trials.iterrows():
        values = {}
        for name, dist in distributions.items():
            raw = trial[f"param.{name}"]
            values[name] = float(raw) if isinstance(dist, FloatDistribution) else ("none" if pd.isna(raw) else str(raw))
        study.add_trial(optuna.trial.create_trial(params=values, distributions=distributions, value=float(trial["objective"])))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: float(v) for k, v in sorted(result.items(), key=lambda kv: (-kv[1], kv[0]))}


def generate_report(tracking_uri: str, *, experiments: list[str] | None = None, out: str | Path = "reports",
                    practical_difference: float | None = None) -> dict[str, Path]:
    """Write leaderboard.md, leaderboard.html (self-contained) and the PNG figures into `out`."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    folder = Path(out)
    with tempfile.TemporaryDirectory(prefix="benchmark-report-") as tmp:
        data = collect(tracking_uri, experiments, Path(tmp))
        folder.mkdir(parents=True, exist_ok=True)
        images = figures(data, folder, practical_difference)
        markdown = render_markdown(data, images)
        page = render_html(data, images, folder)
    (folder / "leaderboard.md").write_text(markdown)
    (folder / "leaderboard.html").write_text(page)
    return {"markdown": folder / "leaderboard.md", "html": folder / "leaderboard.html",
            **{name: folder / name for name in images}}
