"""The report generator on a small MLflow store made by a real (tiny) run."""

import shutil
import subprocess

import pytest
from mlflow_ui import CHROMIUM, HEADLESS

from benchmark.core.names import STAGE_TASK, TAG_STAGE, TAG_TASK
from benchmark.report.base import PAPER_TABLE1, ReportData, Row
from benchmark.report.generate import generate_report
from benchmark.report.markdown import paper_comparison
from benchmark.tracking.store import Tracker


@pytest.fixture
def tiny_store(tiny_run) -> str:
    """The MLflow store of the session's tiny run (conftest.py): these tests only read it."""
    return tiny_run["uri"]


@pytest.mark.slow
def test_report_from_mlflow(tiny_store, tmp_path):
    written = generate_report(tiny_store, out=tmp_path / "reports")
    markdown = written["markdown"].read_text()
    assert "## tiny-global" in markdown and "## tiny-grouped" in markdown
    # one bridge row and one untrained-heads row per task, best first, with CI, n, seeds and significance
    global_section = markdown.split("## tiny-global")[1].split("## ")[0]
    rows = [line for line in global_section.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert rows[0].startswith("| 1 | bridge: ecfp4+tfidf") and rows[1].startswith("| 2 | untrained heads: ecfp4+tfidf")
    assert "[" in rows[0] and "| 0,1 |" in rows[0] and ("yes (p=" in rows[0] or "no (p=" in rows[0])
    grouped_section = markdown.split("## tiny-grouped")[1].split("## ")[0]
    assert " / " in grouped_section  # n queries / n groups
    # no paper task ran: no "side by side with the paper" section of empty rows (it used to show one)
    assert "Side by side with the paper" not in markdown and "0.762" not in markdown
    for name in ("heatmap_tiny-global.png", "recall_at_k_tiny-global.png", "optuna_history_tiny-global.png"):
        assert (tmp_path / "reports" / name).stat().st_size > 1000
        assert f"]({name})" in markdown
    page = written["html"].read_text()
    assert "<style>" in page and "data:image/png;base64," in page and "src='http" not in page  # self-contained
    # the same runs give byte-identical markdown
    again = generate_report(tiny_store, out=tmp_path / "again")
    assert again["markdown"].read_bytes() == written["markdown"].read_bytes()


@pytest.mark.slow
def test_unknown_experiment_suggests(tiny_store, tmp_path):
    from benchmark.core.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="Did you mean 'benchmark-tiny'"):
        generate_report(tiny_store, experiments=["benchmark-tinny"], out=tmp_path)


def test_paper_comparison_places_our_numbers_next_to_table_1():
    def row(task, kind, r1, leaky=False, mode="text_to_molecule"):
        return Row(
            task,
            "s",
            kind,
            "run",
            leaky,
            f"{mode}/recall@1",
            "text_rich",
            "0,1,2",
            metrics={
                f"{mode}/recall@1": {"value": r1, "ci_low": r1 - 0.05, "ci_high": r1 + 0.05, "n": 200},
                f"{mode}/mrr": {"value": r1 + 0.1, "ci_low": r1, "ci_high": r1 + 0.2, "n": 200},
            },
        )

    data = ReportData(
        rows={
            "paper-pair-global": [
                row("paper-pair-global", "bridge", 0.577, True),
                row("paper-pair-global", "untrained heads", 0.008, True),
            ],
            "paper-scaffold-global": [row("paper-scaffold-global", "bridge", 0.199)],
            "paper-scaffold-grouped": [row("paper-scaffold-grouped", "bridge", 0.341, mode="text_to_molecule_grouped")],
        },
        trials=None,
        artifacts={},
        experiments=["benchmark-paper"],
    )
    header, body, found = paper_comparison(data)
    assert found and len(body) == len(PAPER_TABLE1)
    by_setting = {r[0]: r for r in body}
    assert (
        by_setting["ECFP4 + text_rich bridge"][4].startswith("0.577")
        and "LEAKY" in by_setting["ECFP4 + text_rich bridge"][7]
    )
    scaffold = by_setting["Scaffold split (ECFP4 + text_rich)"]
    assert (
        scaffold[1:4] == ["0.150", "0.228", "0.317"]
        and scaffold[4].startswith("0.199")
        and scaffold[6].startswith("0.341")
    )
    assert by_setting["Frozen encoders (ChemBERTa + PubMedBERT)"][4].startswith("0.008")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package 'chromium')")
@pytest.mark.slow
def test_html_renders_in_headless_chromium_without_console_errors(tiny_store, tmp_path):
    written = generate_report(tiny_store, out=tmp_path / "reports")
    shot = tmp_path / "leaderboard.png"
    profile = tmp_path / "profile"
    result = subprocess.run(
        [
            CHROMIUM,
            *HEADLESS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            written["html"].resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 20_000, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


def test_report_on_a_missing_sqlite_store_creates_nothing(tmp_path):
    from benchmark.core.errors import BenchmarkError
    from benchmark.report.generate import generate_report

    db = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(BenchmarkError, match="no MLflow store"):
        generate_report(f"sqlite:///{db}", out=tmp_path / "reports")
    assert not db.exists() and not db.parent.exists() and not (tmp_path / "reports").exists()


def _copy_store(uri: str, to) -> str:
    """A copy of a sqlite store and its artifacts, pointed at the copied artifacts."""
    import sqlite3
    from pathlib import Path

    source = Path(uri[len("sqlite:///") :]).parent
    shutil.copytree(source, to)
    with sqlite3.connect(to / "mlflow.db") as db:
        for table, column in (("runs", "artifact_uri"), ("experiments", "artifact_location")):
            db.execute(f"update {table} set {column} = replace({column}, ?, ?)", (str(source), str(to)))
    return f"sqlite:///{to / 'mlflow.db'}"


@pytest.mark.slow
def test_report_skips_tasks_without_artifacts_draws_each_study_once_and_alters_no_store(tiny_store, tmp_path):
    import hashlib

    from mlflow.tracking import MlflowClient

    uri = _copy_store(tiny_store, tmp_path / "store")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("benchmark-tiny").experiment_id
    parent = client.search_runs([experiment], "tags.stage = 'task' and tags.task = 'tiny-grouped'")[0]
    (
        tmp_path
        / "store"
        / parent.info.artifact_uri.split(str(tmp_path / "store"))[1].lstrip("/")
        / "per_query_ranks.parquet"
    ).unlink()
    trial = client.search_runs([experiment], "tags.stage = 'trial' and tags.task = 'tiny-global'")[0]
    client.delete_run(trial.info.run_id)  # the study's trials now differ between its two tasks
    digest = hashlib.sha256((tmp_path / "store" / "mlflow.db").read_bytes()).hexdigest()

    written = generate_report(uri, out=tmp_path / "reports")
    markdown = written["markdown"].read_text()
    assert "**Skipped**" in markdown and f"tiny-grouped (run {parent.info.run_id})" in markdown
    assert "per_query_ranks.parquet cannot be read" in markdown and "### tiny-global" in markdown
    histories = sorted(p.name for p in (tmp_path / "reports").glob("optuna_history_*.png"))
    assert len(histories) == 1, histories  # one study, drawn once
    assert hashlib.sha256((tmp_path / "store" / "mlflow.db").read_bytes()).hexdigest() == digest


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package 'chromium')")
@pytest.mark.slow
def test_mlflow_ui_opens_the_saved_task_view_with_short_rounded_columns(tiny_store, tmp_path):
    """A real `mlflow server` on 127.0.0.1; headless Chromium opens the suite's saved view of the experiment."""
    import json

    import mlflow
    from mlflow_ui import columns, open_views, row_cells

    from benchmark.tracking.views import SHARED_VIEW_PREFIX, VIEW_TASKS

    client = mlflow.MlflowClient(tiny_store)
    experiment = client.get_experiment_by_name("benchmark-tiny")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on runs, not GenAI
    view = json.loads(experiment.tags[SHARED_VIEW_PREFIX + VIEW_TASKS])
    tasks = client.search_runs([experiment.experiment_id], filter_string=view["searchFilter"])
    assert {r.data.tags["task"] for r in tasks} == {"tiny-global", "tiny-grouped"}
    text, _ = open_views(tiny_store, experiment.experiment_id, [VIEW_TASKS], tmp_path)[VIEW_TASKS]
    assert "Model registry" in text and "Judges" not in text  # MLflow's model-training navigation, not GenAI's
    assert columns(text)[:4] == ["mean", "mean_lo95", "mean_up95", "n"], text[:3000]
    assert {"split", "retrieval", "best", "ranking"} <= set(columns(text))
    for run in tasks:  # each task's primary metric, rounded, with its CI and n, and the words that rank it
        metrics, tags = run.data.metrics, run.data.tags
        key = "test.text_to_molecule" + ("_grouped" if "grouped" in tags["task"] else "") + ".recall_at_1"
        assert metrics["mean"] == round(metrics[key], 3)
        assert row_cells(text, run) in text, (row_cells(text, run), text[text.find("|mean|") :][:1500])
        assert tags["best"].startswith("bridge (ecfp4+tfidf)") and tags["ranking"].startswith(tags["best"])
    assert "| trial " not in text and "final seed" not in text  # only the task parents


def test_a_task_still_running_is_listed_as_in_progress_not_silently_left_out(tmp_path):
    """`report` while a suite runs on the same store: its running task parents are named, not missing."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "benchmark-busy")
    running = tracker.start_run("busy-global", {TAG_STAGE: STAGE_TASK, TAG_TASK: "busy-global"})
    done = generate_report(uri, out=tmp_path / "reports")
    markdown = done["markdown"].read_text()
    assert "**In progress**" in markdown and "busy-global (benchmark-busy, started" in markdown
    assert "In progress" in done["html"].read_text()
    tracker.end(running)
    assert "In progress" not in generate_report(uri, out=tmp_path / "again")["markdown"].read_text()
