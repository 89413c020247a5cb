"""Leaderboards from MLflow: markdown, self-contained HTML, plots, and a side-by-side with the paper.

Everything is read from MLflow (runs, their metrics, tags and artifacts); nothing is retrained.
The same runs give byte-identical markdown: rows are sorted deterministically and the text holds
no timestamps or temporary paths.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from benchmark.core.errors import BenchmarkError
from benchmark.report.collect import collect
from benchmark.report.figures import figures
from benchmark.report.markdown import render_html, render_markdown

log = logging.getLogger(__name__)


def generate_report(
    tracking_uri: str,
    *,
    experiments: list[str] | None = None,
    out: str | Path = "reports",
    practical_difference: float | None = None,
) -> dict[str, Path]:
    """Write leaderboard.md, leaderboard.html (self-contained) and the PNG figures into `out`."""

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise BenchmarkError(f"--out {str(folder)!r} is a file; the report needs a folder (give another --out)")
    with tempfile.TemporaryDirectory(prefix="benchmark-report-") as tmp:
        data = collect(tracking_uri, experiments, Path(tmp))
        folder.mkdir(parents=True, exist_ok=True)
        images = figures(data, folder, practical_difference)
        markdown = render_markdown(data, images)
        page = render_html(data, images, folder)
    (folder / "leaderboard.md").write_text(markdown)
    (folder / "leaderboard.html").write_text(page)
    for line in data.in_progress:
        log.warning("report: in progress, not in the tables: %s", line)
    return {
        "markdown": folder / "leaderboard.md",
        "html": folder / "leaderboard.html",
        **{name: folder / name for name in images},
    }
