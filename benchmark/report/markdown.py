"""The leaderboard as markdown and as self-contained HTML."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from benchmark.core.formatting import format_interval
from benchmark.evaluation.bootstrap import paired_bootstrap
from benchmark.report.base import DIFFERENCES, PAPER_TABLE1, ReportData, Row
from benchmark.report.cv import importance_table, leaderboard, method_note, pair_table, selection_table


def _nan_low(value: float) -> float:
    return -math.inf if value != value else value


def _versus(upper: Row, lower: Row) -> str:
    a, b = upper.per_query, lower.per_query
    if a is None or b is None or len(a) == 0 or not a.index.equals(b.index):
        return "n/a"
    groups = a.index.get_level_values("group").to_numpy() if "group" in (a.index.names or []) else None
    diff = paired_bootstrap(a.to_numpy(), b.to_numpy(), groups=groups, seed=0)
    if diff.note:
        return f"n/a ({diff.note})"
    return f"{'yes' if diff.ci_low > 0 else 'no'} (p={diff.p_value:.3f})"


# ---------------------------------------------------------------- rendering


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None or entry["value"] != entry["value"]:
        return "-"
    if entry.get("ci_low") is None:
        return f"{entry['value']:.3f}"
    return format_interval(entry["value"], entry["ci_low"], entry["ci_high"])


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
    header = (
        ["#", "system", f"{primary} (95% CI)"]
        + [c.split("/")[1] for c in cols[1:]]
        + ["n queries / groups", "seeds", "better than next"]
    )
    body = []
    for i, row in enumerate(rows, 1):
        leak = " (LEAKY split)" if row.leaky else ""
        body.append(
            [str(i), f"{row.kind}: {row.system}{leak}"]
            + [_fmt(row.metrics.get(c)) for c in cols]
            + [_n(row.metrics.get(primary)), row.seeds or "-", row.versus_next or "-"]
        )
    return header, body


def _md_table(header: list[str], body: list[list[str]]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def paper_comparison(data: ReportData) -> tuple[list[str], list[list[str]], bool]:
    header = [
        "setting (paper)",
        "paper R@1",
        "paper MRR",
        "paper grouped R@1",
        "this suite R@1",
        "this suite MRR",
        "this suite grouped R@1",
        "task",
    ]
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
        body.append(
            cells
            + [
                _fmt(row.metrics.get("text_to_molecule/recall@1")),
                _fmt(row.metrics.get("text_to_molecule/mrr")),
                g,
                f"{task}{leak}, {row.kind}",
            ]
        )
    return header, body, any_found


def _cv_markdown(data: ReportData, images: dict[str, str]) -> list[str]:
    if not data.cv:
        return []
    out = [
        "## Repeated cross-validation",
        "",
        "Systems compared fold by fold on the same folds (Ash et al. 2025): no best mean in bold; systems that share "
        "a letter are statistically indistinguishable.",
        "",
    ]
    for task in data.cv:
        out += [f"### {task.task} ({task.experiment})", "", task.description, ""]
        out += [task.dataset, ""] if task.dataset else []
        if task.comparison is None:
            out += ["No comparison: fewer than two systems or three folds finished.", ""]
            continue
        out += [_md_table(*leaderboard(task)), "", method_note(task), "", _md_table(*pair_table(task)), ""]
        if task.importance:
            out += ["Which tuned parameters mattered (fANOVA on each fold's study, over folds):", ""]
            out += [_md_table(*importance_table(task)), ""]
            header, rows = selection_table(task)
            if rows:
                out += ["What per-fold selection earned on the test folds (the selected configuration against the "
                        "untuned defaults, same fold):", "", _md_table(header, rows), ""]  # fmt: skip
        for name, caption in images.items():
            if name.startswith("cv_") and name.endswith(f"_{task.task}.png"):
                out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return out


def render_markdown(data: ReportData, images: dict[str, str]) -> str:
    out = [
        "# Leaderboard: drug-text alignment",
        "",
        f"Generated by `python -m benchmark report` from MLflow experiments: {', '.join(sorted(data.experiments))}.",
        "",
    ]
    if data.in_progress:
        out += ["**In progress** (not in the tables below):", ""] + [f"- {line}" for line in data.in_progress] + [""]
    if data.skipped:
        out += ["**Skipped** (not in the tables below):", ""] + [f"- {line}" for line in data.skipped] + [""]
    out += _cv_markdown(data, images)
    if data.rows:
        out += [
            "## Holdout tasks",
            "",
            "Test metrics are means over the final seeds with 95% bootstrap CIs; every configuration was chosen on "
            "validation data. 'better than next': a paired bootstrap of this row against the row below on the same "
            "test queries (yes when the 95% CI of the difference excludes 0).",
            "",
        ]
    for task in sorted(data.rows):
        rows = data.rows[task]
        leak = " ⚠ LEAKY split (molecules shared between train and test)" if rows[0].leaky else ""
        out += [f"### {task}{leak}", ""] + ([data.datasets[task], ""] if data.datasets.get(task) else [])
        out += [_md_table(*task_table(rows)), ""]
    header, body, any_found = paper_comparison(data)
    if any_found:  # only when a paper task ran: no empty section
        out += (
            [
                "## Side by side with the paper (Tupakula 2025, Table 1)",
                "",
                _md_table(header, body),
                "",
                "What differs:",
                "",
            ]
            + [f"- {d}" for d in DIFFERENCES]
            + [""]
        )
    holdout_images = {n: c for n, c in images.items() if not n.startswith("cv_")}
    if holdout_images:
        out += ["## Figures (holdout tasks)", ""]
        for name, caption in holdout_images.items():
            out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def wording(data: ReportData) -> str:
    """How the numbers below were made, for the protocols the report holds."""
    parts = []
    if data.cv:
        parts.append(
            "Repeated cross-validation: each system's value per outer fold, tested once on that fold; means with 95% "
            "CIs over folds; configurations selected on each fold's inner validation data only."
        )
    if data.rows:
        parts.append(
            "Holdout: test metrics are seed means with 95% bootstrap CIs; configurations chosen on validation."
        )
    return " ".join(parts)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}.leaky{color:#b00020;font-weight:600}figure{margin:1.5rem 0}
img{max-width:100%;border:1px solid #eee}figcaption{font-style:italic;font-size:.85rem}"""


def render_html(data: ReportData, images: dict[str, str], folder: Path) -> str:
    def table(header, body):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Leaderboard: drug-text alignment</title>",
        f"<style>{CSS}</style></head><body><h1>Leaderboard: drug-text alignment</h1>",
        f"<p>From MLflow experiments {html.escape(', '.join(sorted(data.experiments)))}. "
        f"{html.escape(wording(data))}</p>",
    ]
    for title, lines in (("In progress", data.in_progress), ("Skipped", data.skipped)):
        if lines:
            parts.append(
                f"<p><strong>{title}</strong> (not in the tables below):</p><ul>"
                + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
                + "</ul>"
            )

    def figure(name: str, caption: str) -> str:
        encoded = base64.b64encode((folder / name).read_bytes()).decode()
        return (
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{encoded}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    if data.cv:
        parts.append(
            "<h2>Repeated cross-validation</h2><p>Systems sharing a letter are statistically "
            "indistinguishable; no best mean in bold.</p>"
        )
        for task in data.cv:
            parts.append(f"<h3>{html.escape(task.task)} ({html.escape(task.experiment)})</h3>")
            if task.description:
                parts.append(f"<p>{html.escape(task.description)}</p>")
            if task.dataset:
                parts.append(f"<p>{html.escape(task.dataset.replace('**', ''))}</p>")
            if task.comparison is None:
                parts.append("<p>No comparison: fewer than two systems or three folds finished.</p>")
                continue
            parts += [
                table(*leaderboard(task)),
                f"<p>{html.escape(method_note(task).replace('**', ''))}</p>",
                table(*pair_table(task)),
            ]
            if task.importance:
                parts.append(table(*importance_table(task)))
                header, rows = selection_table(task)
                if rows:
                    parts.append(table(header, rows))
            parts += [
                figure(n, c) for n, c in images.items() if n.startswith("cv_") and n.endswith(f"_{task.task}.png")
            ]
    for task in sorted(data.rows):
        rows = data.rows[task]
        leak = " <span class='leaky'>⚠ LEAKY split</span>" if rows[0].leaky else ""
        card = f"<p>{html.escape(data.datasets[task].replace('**', ''))}</p>" if data.datasets.get(task) else ""
        parts.append(f"<h2>{html.escape(task)}{leak}</h2>" + card + table(*task_table(rows)))
    header, body, any_found = paper_comparison(data)
    if any_found:  # only when a paper task ran: no empty section
        parts.append("<h2>Side by side with the paper (Table 1)</h2>" + table(header, body))
        parts.append("<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in DIFFERENCES) + "</ul>")
    parts += [figure(n, c) for n, c in images.items() if not n.startswith("cv_")]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
