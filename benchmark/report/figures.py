"""The report's figures: heatmaps, Recall@k, ablations, optimisation histories, parameter importances."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import cv as report_cv
from benchmark.report.base import ReportData, _save
from benchmark.report.markdown import _n


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
    import matplotlib  # matplotlib: heavy, imported only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: heavy, imported only to draw

    images: dict[str, str] = {}
    colours = report_cv.system_colours(data.cv)  # one colour per system in every figure of the report
    for task in data.cv:
        if task.comparison is not None:
            images.update(
                report_cv.figures(
                    task, folder, report_cv.PRACTICAL_DIFFERENCE if practical is None else practical, colours=colours
                )
            )
    # one heatmap and one Recall@k figure per (split, text field, system): global tasks first
    best_bridges, shown = {}, set()
    for task, rows in sorted(
        data.rows.items(), key=lambda kv: (kv[1][0].primary.split("/")[0].endswith("_grouped"), kv[0])
    ):
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
            images[name] = (
                f"{task}: cosine similarity of the first 40 test pairs, untrained heads (left) and trained bridge "
                "(right)"
            )
    for task, row in sorted(best_bridges.items()):
        frame = pd.read_parquet(data.artifacts[f"queries:{row.run_id}"])
        first_seed = sorted(frame["seed"].unique())[0]
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for mode, label in (("text_to_molecule", "global"), ("text_to_molecule_grouped", "within target")):
            ranks = frame[(frame["system"] == "bridge") & (frame["mode"] == mode) & (frame["seed"] == first_seed)][
                "rank"
            ]
            if len(ranks):
                ks = np.arange(1, 51)
                ax.plot(ks, [(ranks <= k).mean() for k in ks], marker=".", label=f"{label} (n={len(ranks)})")
        ax.set(xlabel="k", ylabel="Recall@k", ylim=(0, 1.02), title=f"{task}: cumulative match, text to molecule")
        ax.grid(alpha=0.3)
        ax.legend()
        images[_save(fig, folder, f"recall_at_k_{task}.png")] = (
            f"{task}: Recall@k, global vs within-target (seed {first_seed})"
        )
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
            ax.set(
                xlabel=label,
                ylabel="grouped Recall@1 (validation)",
                title=f"Ablation over {label} (trials per bar: {'/'.join(str(int(c)) for c in stats['count'])})",
            )
            images[_save(fig, folder, f"ablation_{param.split('.')[-1]}.png")] = (
                f"Grouped Recall@1 on validation across {label} (text_rich trials of every study; bars: mean and sd)"
            )
    drug = [
        (r.text_field, r)
        for rows in data.rows.values()
        for r in rows[:1]
        if r.kind == "bridge" and r.primary.startswith("text_to_molecule_grouped")
    ]
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
        ax.bar(
            [f"{f}\n(n {n})" for f, n in zip(labels, ns)],
            means,
            yerr=err,
            capsize=4,
            color=["#4c72b0", "#dd8452", "#55a868"][: len(labels)],
        )
        ax.set(ylabel="grouped Recall@1 (test, 95% CI)", title="With and without the drug name in the text")
        images[_save(fig, folder, "ablation_drug_name.png")] = (
            "Grouped Recall@1 with and without the drug name (test). Without the name, drugs with the same target "
            "and action share one text: a query has several correct molecules and there are fewer queries (n), so "
            "the bars measure different tasks"
        )
    for task, study in _studies(data.trials).items():
        done = study[study["status"] == "finished"].dropna(subset=["objective"])
        if len(done) < 2:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.plot(range(1, len(done) + 1), done["objective"], "o", label="trial")
        ax.plot(range(1, len(done) + 1), done["objective"].cummax(), "-", label="best so far")
        ax.set(xlabel="trial", ylabel="validation objective", title=f"Optimisation history ({task} study)")
        ax.legend()
        images[_save(fig, folder, f"optuna_history_{task.replace(' ', '_')}.png")] = (
            f"Optuna optimisation history of the {task} study"
        )
        importances = param_importances(done)
        if importances:
            fig, ax = plt.subplots(figsize=(5.5, 0.4 * len(importances) + 1.2))
            names = list(importances)[::-1]
            ax.barh(names, [importances[n] for n in names], color="#55a868")
            ax.set(xlabel="importance (fANOVA)", title=f"Parameter importances ({task} study)")
            images[_save(fig, folder, f"optuna_importance_{task.replace(' ', '_')}.png")] = (
                f"Optuna parameter importances of the {task} study"
            )
    return images


def param_importances(trials: pd.DataFrame) -> dict[str, float]:
    """fANOVA importances of the sampled parameters, from an Optuna study rebuilt from MLflow trial runs."""
    import optuna  # optuna: imported only when a study is read
    from optuna.distributions import (  # optuna: imported only when a study is read
        CategoricalDistribution,
        FloatDistribution,
    )

    params = [c for c in trials if c.startswith("param.") and trials[c].nunique(dropna=True) > 1]
    if not params or len(trials) < 3:
        return {}
    distributions = {}
    for column in params:
        numeric = _as_float(trials[column])
        if numeric.notna().all():
            distributions[column[6:]] = FloatDistribution(float(numeric.min()), float(numeric.max()))
        else:
            distributions[column[6:]] = CategoricalDistribution(
                sorted(trials[column].fillna("none").astype(str).unique())
            )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for _, trial in trials.iterrows():
        values = {}
        for name, dist in distributions.items():
            raw = trial[f"param.{name}"]
            values[name] = float(raw) if isinstance(dist, FloatDistribution) else ("none" if pd.isna(raw) else str(raw))
        study.add_trial(
            optuna.trial.create_trial(params=values, distributions=distributions, value=float(trial["objective"]))
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: float(v) for k, v in sorted(result.items(), key=lambda kv: (-kv[1], kv[0]))}
