"""What the report reads from MLflow: runs by stage, metrics with their CIs, the dataset line, saving figures."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.core.names import (
    TAG_RUN_UID,
    TAG_STAGE,
    TAG_STATUS,
    TAG_TASK,
    TAG_TRIAL_ID,
    metric_key,
)
from benchmark.evaluation.plots import png_bytes

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
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            max_results=1000,
            page_token=token,
            order_by=["attributes.start_time ASC"],
        )
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
                out[f"{mode}/{metric}"] = {
                    "value": data[key],
                    "ci_low": data.get(f"{key}_ci_low"),
                    "ci_high": data.get(f"{key}_ci_high"),
                    "n": data.get(f"{key}_n"),
                    "n_groups": data.get(f"{key}_n_groups"),
                }
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
    in_progress: list[str] = field(default_factory=list)  # task runs still RUNNING (a suite at work, or cut off)


def dataset_line(run) -> str:
    """One line of the dataset card that a task's parent run logged as its MLflow input."""

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
    return (
        f"Dataset: **{d.name}** (fingerprint {d.digest}; {profile.get('n_pairs', '?')} pairs, "
        f"{profile.get('n_molecules', '?')} molecules, {profile.get('n_groups', '?')} targets; read from "
        f"{Path(str(source)).name}; ChEMBL data, CC BY-SA 3.0: credit ChEMBL)"
    )


def _trial_frame(runs: list, text_fields: dict[str, str]) -> pd.DataFrame:
    records = []
    for run in runs:
        tags = run.data.tags
        record = {
            "task": tags.get(TAG_TASK),
            "trial_id": tags.get(TAG_TRIAL_ID),
            "text_field": text_fields.get(tags.get("mlflow.parentRunId", ""), "text_rich"),
            "run_uid": tags.get(TAG_RUN_UID, ""),
            "status": tags.get(TAG_STATUS),
            "start": run.info.start_time,
            "objective": run.data.metrics.get("objective"),
        }
        for key, value in run.data.params.items():
            record[f"param.{key}"] = value
        for key, value in run.data.metrics.items():
            if key.startswith("val."):
                record[key] = value
        records.append(record)
    frame = pd.DataFrame(records)
    return frame.sort_values(["task", "start", "trial_id"]).reset_index(drop=True) if len(frame) else frame


# ---------------------------------------------------------------- figures


def _save(fig, folder: Path, name: str) -> str:
    from PIL import Image  # PIL: imported only to embed figures

    # plots have few colours: a 256-colour palette keeps them sharp at a third of the size (the HTML embeds them)
    Image.open(io.BytesIO(png_bytes(fig, dpi=100))).convert("RGB").quantize(256).save(
        folder / name, format="PNG", optimize=True
    )
    return name
