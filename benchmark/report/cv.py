"""The repeated cross-validation part of the report: comparisons, not a bold best mean.

For every repeated-CV task (its newest finished parent run in MLflow) the per-fold test values
are read back from the fit runs, the systems are compared with `benchmark.comparison` (the same
code the run used, so report and results.json agree), and drawn as the method-comparison
protocol asks: a leaderboard with compact letters (systems sharing a letter are statistically
indistinguishable), per-fold strips with a line per fold, the pairwise mean-difference heatmap
whose colour starts at a practical-difference threshold (stars mark adjusted p), the Tukey
simultaneous-CI plot, and a critical-difference diagram of mean ranks. Tuned systems add which of
their parameters mattered: fANOVA importance per fold, mean over folds with a 95% CI (table and plot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.formatting import format_interval
from benchmark.core.names import (
    REPEATED_CV,
    STAGE_FIT,
    STAGE_SYSTEM,
    STAGE_TASK,
    TAG_FOLD,
    TAG_NOTE,
    TAG_PRIMARY,
    TAG_PROTOCOL,
    TAG_REPEAT,
    TAG_RUN_UID,
    TAG_STAGE,
    TAG_SYSTEM,
    TAG_TASK,
    TEST_PREFIX,
)
from benchmark.evaluation.comparison import Comparison, compare_systems
from benchmark.report.base import _save, dataset_line, search_all
from benchmark.tasks.specs import METRICS

#: mean differences smaller than this are drawn as no difference in the heatmap (a setting of `report`)
PRACTICAL_DIFFERENCE = 0.02
#: the untuned configuration a tuned system's per-fold selection is measured against
REFERENCE_SYSTEM = "paper-defaults"


@dataclass
class CVTask:
    task: str
    experiment: str
    run_id: str
    primary: str
    description: str
    scores: pd.DataFrame  # system, fold, repeat, key, value
    comparison: Comparison | None  # on the primary metric
    dataset: str = ""  # the dataset card line of the parent run
    #: tuned systems: parameter -> {mean, ci_low, ci_high, n_folds} of fANOVA importance over folds
    importance: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def means(self, key: str) -> dict[str, float]:
        part = self.scores[self.scores["key"] == key]
        return part.groupby("system")["value"].mean().to_dict()


def _key_of(metric_name: str) -> str | None:
    """'test.text_to_molecule.recall_at_1' -> 'text_to_molecule/recall@1' (None for counts)."""
    parts = metric_name.split(".")
    if len(parts) != 3 or parts[0] != TEST_PREFIX or parts[2] == "n_queries":
        return None
    return f"{parts[1]}/{parts[2].replace('_at_', '@')}"


def collect_cv(client, experiments: dict[str, str]) -> list[CVTask]:
    """Newest finished repeated-CV parent per task, its fits as a long frame, and the comparison."""

    ids = list(experiments)
    parents = search_all(client, ids, f"tags.{TAG_STAGE} = '{STAGE_TASK}' and tags.{TAG_PROTOCOL} = '{REPEATED_CV}'")
    newest: dict[str, object] = {}
    for run in sorted((r for r in parents if r.info.status == "FINISHED"), key=lambda r: r.info.start_time):
        newest[run.data.tags[TAG_TASK]] = run
    out = []
    for task, parent in sorted(newest.items()):
        tags = parent.data.tags
        fits = search_all(
            client,
            [parent.info.experiment_id],
            f"tags.{TAG_STAGE} = '{STAGE_FIT}' and tags.{TAG_TASK} = '{task}' "
            f"and tags.{TAG_RUN_UID} = '{tags[TAG_RUN_UID]}'",
        )
        rows = [
            {
                "system": f.data.tags[TAG_SYSTEM],
                "fold": f.data.tags[TAG_FOLD],
                "repeat": int(f.data.tags[TAG_REPEAT]),
                "key": key,
                "value": value,
            }
            for f in fits
            if f.info.status == "FINISHED"
            for name, value in f.data.metrics.items()
            if (key := _key_of(name))
        ]
        scores = pd.DataFrame(rows, columns=["system", "fold", "repeat", "key", "value"])
        scores = scores.drop_duplicates(["system", "fold", "key"]).sort_values(
            ["key", "system", "fold"], ignore_index=True
        )
        systems = search_all(
            client,
            [parent.info.experiment_id],
            f"tags.{TAG_STAGE} = '{STAGE_SYSTEM}' and tags.{TAG_TASK} = '{task}' "
            f"and tags.{TAG_RUN_UID} = '{tags[TAG_RUN_UID]}'",
        )
        importance = {r.data.tags[TAG_SYSTEM]: _importance_of(r.data.metrics) for r in systems}
        primary = tags[TAG_PRIMARY]
        part = scores[scores["key"] == primary]
        comparison = None
        if part["system"].nunique() >= 2 and part["fold"].nunique() >= 3:
            comparison = compare_systems(part, primary)

        out.append(
            CVTask(
                task,
                experiments[parent.info.experiment_id],
                parent.info.run_id,
                primary,
                tags.get(TAG_NOTE, ""),
                scores,
                comparison,
                dataset_line(parent),
                {system: values for system, values in importance.items() if values},
            )
        )
    return out


def _importance_of(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """'importance.loss/temperature_mean' (a system run's metrics) -> {'loss/temperature': {'mean': ...}}."""
    out: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        if not name.startswith("importance."):
            continue
        rest = name[len("importance.") :]
        stat = next((s for s in ("mean", "ci_low", "ci_high", "n_folds") if rest.endswith("_" + s)), None)
        if stat:
            out.setdefault(rest[: -len(stat) - 1], {})[stat] = value
    return dict(sorted(out.items(), key=lambda item: -item[1].get("mean", 0.0)))


def importance_table(task: CVTask) -> tuple[list[str], list[list[str]]]:
    header = ["system", "parameter", "fANOVA importance, mean over folds [95% CI]", "folds"]
    rows = []
    for system, params in sorted(task.importance.items()):
        for param, s in params.items():
            low, high = s.get("ci_low", float("nan")), s.get("ci_high", float("nan"))
            rows.append([system, param, format_interval(s["mean"], low, high), str(int(s.get("n_folds", 0)))])
    return header, rows


def selection_table(task: CVTask, reference: str = REFERENCE_SYSTEM) -> tuple[list[str], list[list[str]]]:
    """Per tuned system: on each test fold, its selected configuration minus `reference` (same fold, primary
    metric) - the mean, how many folds it was ahead / tied / behind. Selection on ~250 inner-validation pairs
    can pick a lucky configuration rather than a better one: this is what the selection earned on test."""
    header = ["tuned system", f"minus {reference}: mean per fold", "ahead", "tied", "behind", "folds"]
    part = task.scores[task.scores["key"] == task.primary]
    wide = part.pivot_table(index=["repeat", "fold"], columns="system", values="value")
    rows = []
    for system in sorted(task.importance):
        if system == reference or system not in wide or reference not in wide:
            continue
        diff = (wide[system] - wide[reference]).dropna()
        if diff.empty:
            continue
        ahead, behind = int((diff > 1e-12).sum()), int((diff < -1e-12).sum())
        rows.append([system, f"{diff.mean():+.3f}", str(ahead), str(len(diff) - ahead - behind), str(behind),
                     str(len(diff))])  # fmt: skip
    return header, rows


# ---------------------------------------------------------------- tables


def leaderboard(task: CVTask) -> tuple[list[str], list[list[str]]]:
    c = task.comparison
    mode = task.primary.split("/")[0]

    present = set(task.scores["key"])
    others = [f"{mode}/{m}" for m in METRICS if f"{mode}/{m}" in present and f"{mode}/{m}" != task.primary]
    header = ["system", "group", f"{task.primary} mean [95% CI]", "n folds", "mean rank"] + [
        k.split("/")[1] for k in others
    ]
    body = []
    for s in c.summaries:
        body.append(
            [
                s.system,
                c.letters.get(s.system, "-"),
                format_interval(s.mean, s.ci_low, s.ci_high),
                str(s.n_folds),
                f"{s.mean_rank:.2f}",
            ]
            + [f"{task.means(k).get(s.system, float('nan')):.3f}" for k in others]
        )
    return header, body


def pair_table(task: CVTask) -> tuple[list[str], list[list[str]]]:
    c = task.comparison
    order = c.systems
    header = ["pair (a - b)", "mean difference", "95% simultaneous CI (Tukey)", "adjusted p", "different"]
    body = []
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            p = c.pair(a, b)
            body.append(
                [
                    f"{a} - {b}",
                    f"{p.difference:+.3f}",
                    f"[{p.ci_low:+.3f}, {p.ci_high:+.3f}]",
                    f"{p.p_adj:.3g}",
                    "yes" if p.significant else "no",
                ]
            )
    return header, body


def method_note(task: CVTask) -> str:
    c = task.comparison
    om = c.omnibus
    omnibus = (
        f"F({om['df_num']:.0f}, {om['df_den']:.0f}) = {om['F']:.2f}, p = {om['p_value']:.3g}"
        if "F" in om
        else f"statistic {om['statistic']:.2f}, p = {om['p_value']:.3g}"
    )
    return (
        f"{c.n_folds} folds per system. Test: **{c.test}** ({c.reason}); omnibus {omnibus}. Systems sharing a "
        f"letter in 'group' are not significantly different (family-wise alpha {c.alpha}). Means with t-based 95% "
        "CIs across folds, cut to the metric's range [0, 1] (a confidence set intersected with the parameter space "
        "keeps its coverage); folds share training data, so these CIs are optimistic: the paired tests are the "
        "conclusion."
    )


# ---------------------------------------------------------------- figures


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


#: the colours systems get, in the order of their names over the whole report (matplotlib's tab10, then tab20)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5")  # fmt: skip


def system_colours(tasks: list[CVTask]) -> dict[str, str]:
    """System -> colour, the same in every figure of one report (a critical-difference diagram used to colour by
    rank, so one system changed colour between tasks)."""
    names = sorted({s for task in tasks if task.comparison is not None for s in task.comparison.systems})
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def figures(
    task: CVTask, folder: Path, practical: float = PRACTICAL_DIFFERENCE, colours: dict[str, str] | None = None
) -> dict[str, str]:
    import matplotlib  # matplotlib: heavy, imported only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: heavy, imported only to draw

    c, images = task.comparison, {}
    order = c.systems
    wide = task.scores[task.scores["key"] == task.primary].pivot(index="fold", columns="system", values="value")[order]
    wide = wide.dropna()
    fig, ax = plt.subplots(figsize=(1.6 * len(order) + 2, 4))
    x = np.arange(len(order))
    for _, row in wide.iterrows():  # one line per fold: paired values
        ax.plot(x, row.to_numpy(), color="#999", alpha=0.35, lw=0.8)
    ax.boxplot([wide[s].to_numpy() for s in order], positions=x, widths=0.35, showfliers=False)
    for i, s in enumerate(order):
        ax.scatter(np.full(len(wide), i) + np.linspace(-0.08, 0.08, len(wide)), wide[s], s=12, zorder=3)
    ax.set_xticks(x, [f"{s}\n({c.letters.get(s, '')})" for s in order], fontsize=8)
    ax.set(ylabel=task.primary, title=f"{task.task}: per-fold test values (lines join a fold's systems)")
    images[_save(fig, folder, f"cv_folds_{task.task}.png")] = (
        f"{task.task}: {task.primary} on each of {len(wide)} folds; letters: statistically indistinguishable groups"
    )

    k = len(order)
    diff = np.array([[c.pair(a, b).difference if a != b else 0.0 for b in order] for a in order])
    pmat = np.array([[c.pair(a, b).p_adj if a != b else 1.0 for b in order] for a in order])
    fig, ax = plt.subplots(figsize=(1.1 * k + 3, 0.9 * k + 1.5))
    limit = max(float(np.abs(diff).max()), practical * 1.5)
    shown = np.ma.masked_where(np.abs(diff) < practical, diff)
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
    im = ax.imshow(shown, cmap=cmap, vmin=-limit, vmax=limit)
    for i in range(k):
        for j in range(k):
            if i != j:
                ax.text(j, i, f"{diff[i, j]:+.3f}{_stars(pmat[i, j])}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(k), order, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(k), order, fontsize=8)
    fig.colorbar(im, ax=ax, label=f"row - column ({task.primary})")
    ax.set_title(
        f"{task.task}: mean differences (white: |d| < {practical:g}; * p<.05 ** p<.01 *** p<.001, {c.test})", fontsize=9
    )
    images[_save(fig, folder, f"cv_differences_{task.task}.png")] = (
        f"{task.task}: pairwise mean differences, row minus column, ordered by mean; colour only where the difference "
        f"reaches the practical threshold {practical:g}; stars: adjusted p of {c.test}"
    )

    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(pairs) + 1.4))
    for y, (a, b) in enumerate(pairs):
        p = c.pair(a, b)
        colour = "#c44e52" if p.significant else "#4c72b0"
        ax.errorbar(
            p.difference,
            y,
            xerr=[[p.difference - p.ci_low], [p.ci_high - p.difference]],
            fmt="o",
            color=colour,
            capsize=3,
        )
    ax.axvline(0, color="k", lw=0.8)
    for edge in (-practical, practical):
        ax.axvline(edge, color="#999", lw=0.8, ls="--")
    ax.set_yticks(range(len(pairs)), [f"{a} - {b}" for a, b in pairs], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=f"mean difference in {task.primary}", title=f"{task.task}: Tukey 95% simultaneous CIs")
    images[_save(fig, folder, f"cv_tukey_{task.task}.png")] = (
        f"{task.task}: mean differences with Tukey 95% simultaneous confidence intervals (red: significant by "
        f"{c.test}); dashed: the practical threshold ±{practical:g}"
    )

    images.update(_cd_diagram(task, folder, colours or system_colours([task])))
    images.update(_importance_figure(task, folder))
    return images


def _importance_figure(task: CVTask, folder: Path) -> dict[str, str]:
    """fANOVA importance per parameter of each tuned system: mean over folds with its 95% CI."""
    if not task.importance:
        return {}
    import matplotlib.pyplot as plt  # matplotlib: heavy, imported only to draw

    rows = [(system, param, s) for system, params in sorted(task.importance.items()) for param, s in params.items()]
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(rows) + 1.4))
    for y, (_, _, s) in enumerate(rows):
        low, high = s.get("ci_low", s["mean"]), s.get("ci_high", s["mean"])
        low, high = (s["mean"], s["mean"]) if low != low else (low, high)
        ax.barh(y, s["mean"], color="#4c72b0")
        ax.errorbar(s["mean"], y, xerr=[[s["mean"] - low], [high - s["mean"]]], fmt="none", color="k", capsize=3)
    ax.set_yticks(range(len(rows)), [f"{system}: {param}" for system, param, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="fANOVA importance (share of the objective's variance)", title=f"{task.task}")
    name = _save(fig, folder, f"cv_importance_{task.task}.png")
    return {name: f"{task.task}: which tuned parameters mattered - fANOVA per fold, mean over folds with 95% CI"}


def _cd_diagram(task: CVTask, folder: Path, colours: dict[str, str]) -> dict[str, str]:
    import matplotlib.pyplot as plt  # matplotlib: heavy, imported only to draw
    import scikit_posthocs as sp  # scikit_posthocs: imported only for the Conover test

    c = task.comparison
    ranks = pd.Series({s.system: s.mean_rank for s in c.summaries})
    sig = pd.DataFrame(c.p_matrix).loc[ranks.index, ranks.index]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ranks) + 1.6))
    sp.critical_difference_diagram(ranks, sig, ax=ax, alpha=c.alpha, color_palette=colours)
    ax.set_title(
        f"{task.task}: mean rank across folds (1 = best); bars join systems not significantly different", fontsize=9
    )
    return {
        _save(fig, folder, f"cv_cd_{task.task}.png"): (
            f"{task.task}: critical-difference diagram of mean ranks over {c.n_folds} folds; crossbars join systems "
            "whose "
            f"difference is not significant ({c.test})"
        )
    }
