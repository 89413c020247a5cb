"""`run` under repeated cross-validation, end to end on a tiny suite: Ray Tune + Optuna + MLflow + statistics."""

from collections import Counter

import optuna
import pytest
from mlflow.tracking import MlflowClient
from mlflow_ui import CHROMIUM, columns, open_views, row_cells
from suite_helpers import run_command, write_cv_suite

from benchmark.core.names import STAGE_FIT, STAGE_SYSTEM, STAGE_TASK, STAGE_TRIAL
from benchmark.run.options import RunOptions
from benchmark.run.result_schema import check_results, read_results
from benchmark.run.suite import run_suite

pytestmark = pytest.mark.slow  # end to end (Ray, MLflow, subprocesses): pytest -m 'not slow' skips it


@pytest.fixture(scope="module")
def cv_run(ray_local, tmp_path_factory, tiny_frame):
    root = tmp_path_factory.mktemp("cv")
    tiny_frame.to_csv(root / "tiny.csv", index=False)
    # 4 configurations per fold under successive halving: 10 epochs, validated every 5 (rungs at epoch 5)
    folder = write_cv_suite(root / "tasks", root / "tiny.csv", folds=3, repeats=2, budget=4, halving=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHMARK_TASKS_DIR", str(folder))
        options = RunOptions(suite="tinycv", tracking_uri=uri, output=str(root / "out"), allow_download=False)
        results = run_suite(options)
        yield {"uri": uri, "root": root, "results": results, "options": options}


def stages(uri: str) -> dict[str, list]:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("benchmark-tinycv").experiment_id], max_results=5000)
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.data.tags["stage"], []).append(run)
    return out


def test_every_system_is_fitted_and_tested_once_per_fold_and_logged(cv_run):
    by_stage = stages(cv_run["uri"])
    folds = {f"r{r}f{f}" for r in range(2) for f in range(3)}
    fits = by_stage[STAGE_FIT]
    assert len(fits) == 2 * 2 * 6  # tasks x systems x folds
    seen = Counter((r.data.tags["task"], r.data.tags["system"], r.data.tags["fold"]) for r in fits)
    assert set(seen.values()) == {1} and {f for (_, _, f) in seen} == folds
    assert all(r.data.tags["repeat"] == r.data.tags["fold"][1] for r in fits)
    systems = by_stage[STAGE_SYSTEM]
    assert len(systems) == 4
    summary = next(
        r for r in systems if r.data.tags["task"] == "tinycv-global" and r.data.tags["system"] == "tinycv-tuned"
    ).data.metrics
    mean = summary["cv.text_to_molecule.recall_at_1_mean"]
    assert (
        summary["cv.text_to_molecule.recall_at_1_ci_low"] <= mean <= summary["cv.text_to_molecule.recall_at_1_ci_high"]
    )
    assert summary["cv.text_to_molecule.recall_at_1_n_folds"] == 6
    parents = by_stage[STAGE_TASK]
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    client = MlflowClient(cv_run["uri"])
    assert "comparison.json" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    from benchmark.data import load_dataset

    fingerprint = load_dataset(cv_run["root"] / "tiny.csv").fingerprint
    for parent in parents:  # the runs table's Dataset column: name and digest = the dataset fingerprint
        inputs = client.get_run(parent.info.run_id).inputs.dataset_inputs
        assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("tiny.csv", fingerprint)]
    assert any(k.endswith(".p_adj") for k in parents[0].data.metrics)


def test_tuning_stays_inside_each_fold(cv_run):
    """Each fold's Optuna study holds exactly that fold's trials; the chosen value is that fold's best."""
    by_stage = stages(cv_run["uri"])
    trials = [r for r in by_stage[STAGE_TRIAL] if r.data.tags["task"] == "tinycv-global"]
    per_fold = Counter(r.data.tags["fold"] for r in trials)
    assert set(per_fold.values()) == {4} and len(per_fold) == 6
    storage = f"sqlite:///{cv_run['root'] / 'out' / 'optuna.db'}"
    studies = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert len(studies) == 6 and set(studies.values()) == {4}
    entry = cv_run["results"]["tasks"]["tinycv-global"]
    for fold, chosen in entry["systems"]["tinycv-tuned"]["chosen"].items():
        full = [r for r in trials if r.data.tags["fold"] == fold and r.data.tags["stopped_early"] == "False"]
        vals = [r.data.metrics["val.text_to_molecule.recall_at_1"] for r in full]
        assert chosen["val"] == pytest.approx(max(vals)) and chosen["selected_by"] == "val/text_to_molecule/recall@1"
    grouped = cv_run["results"]["tasks"]["tinycv-grouped"]["systems"]["tinycv-tuned"]["chosen"]
    assert len(grouped) == 6  # every fold chose, by the objective where its inner validation has no group
    assert {c["selected_by"] for c in grouped.values()} <= {"val/text_to_molecule_grouped/recall@1", "objective"}
    assert entry["systems"]["tinycv-untrained"]["chosen"] == {}


def test_successive_halving_stops_weak_configurations_inside_each_fold(cv_run):
    """Some trials stop at the first rung (epoch 5 of 10); every chosen configuration reached the full budget;
    each trial says in MLflow the epoch it reached, whether it was stopped, and its threads."""
    trials = [r for r in stages(cv_run["uri"])[STAGE_TRIAL] if r.data.tags["task"] == "tinycv-global"]
    stopped = [r for r in trials if r.data.tags["stopped_early"] == "True"]
    assert stopped and all(r.data.metrics["epochs_reached"] == 5 for r in stopped)
    assert all(r.data.metrics["epochs_reached"] == 10 for r in trials if r not in stopped)
    assert all(int(r.data.params["threads"]) >= 1 for r in trials)
    by_id = {r.data.tags["trial_id"]: r for r in trials}
    chosen = {(r.data.tags["fold"], r.data.params["loss.temperature"]) for r in trials if r not in stopped}
    for fold, c in cv_run["results"]["tasks"]["tinycv-global"]["systems"]["tinycv-tuned"]["chosen"].items():
        assert any(f == fold and f"T={float(t):.3g}" in c["config"] for f, t in chosen), (fold, c)
    search = cv_run["results"]["tasks"]["tinycv-global"]["systems"]["tinycv-tuned"]["search"]
    assert search["configurations_per_fold"] == 4 and search["successive_halving"] is True
    assert search["trials"] == len(by_id) == 24 and search["stopped_early"] == len(stopped)
    assert "loss/temperature" in search["importance"]  # fANOVA over the folds that had enough trials
    t = search["importance"]["loss/temperature"]
    assert 0.0 <= t["mean"] <= 1.0 and t["n_folds"] >= 2


def test_results_carry_per_fold_values_and_the_comparison(cv_run):
    saved = check_results(read_results(cv_run["root"] / "out" / "results.json"))  # declared shape, version 1
    entry = saved["tasks"]["tinycv-grouped"]
    assert entry["protocol"]["kind"] == "repeated_cv" and len(entry["folds"]["per_fold"]) == 6
    tuned = entry["systems"]["tinycv-tuned"]
    assert len(tuned["per_fold"]) == 6
    key = "text_to_molecule_grouped/recall@1"
    values = [v[key] for v in tuned["per_fold"].values()]
    assert tuned["summary"][key]["mean"] == pytest.approx(sum(values) / 6)
    comparison = entry["comparison"][key]
    assert comparison["test"] and comparison["reason"] and len(comparison["pairs"]) == 1
    pair = comparison["pairs"][0]
    assert pair["ci_low"] <= pair["difference"] <= pair["ci_high"] and 0 <= pair["p_adj"] <= 1
    assert set(comparison["letters"]) == {"tinycv-tuned", "tinycv-untrained"}


def test_no_interval_of_a_recall_or_mrr_leaves_zero_one(cv_run):
    """Across-fold CIs in results.json, in the comparison and in MLflow stay in [0, 1] (the untrained system sits
    near 0, where a plain t interval goes negative)."""
    saved = read_results(cv_run["root"] / "out" / "results.json")
    bounds = []
    for entry in saved["tasks"].values():
        for system in entry["systems"].values():
            bounds += [(k, s["ci_low"], s["ci_high"]) for k, s in system["summary"].items()]
        for key, comparison in entry["comparison"].items():
            bounds += [(key, s["ci_low"], s["ci_high"]) for s in comparison["systems"]]
    client = MlflowClient(cv_run["uri"])
    experiment = client.get_experiment_by_name("benchmark-tinycv").experiment_id
    for run in client.search_runs([experiment], max_results=5000):
        for name, value in run.data.metrics.items():
            if ("recall_at" in name or "mrr" in name) and name.endswith(("_ci_low", "_ci_high")):
                bounds.append((name, value, value))
    assert len(bounds) > 20
    outside = [(k, low, high) for k, low, high in bounds if not 0.0 <= low <= high <= 1.0]
    assert not outside, outside
    untrained = saved["tasks"]["tinycv-global"]["systems"]["tinycv-untrained"]["summary"]
    assert untrained["text_to_molecule/recall@1"]["ci_low"] >= 0.0


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package 'chromium')")
def test_the_saved_mlflow_views_compare_systems_without_a_click(cv_run, tmp_path):
    """Headless Chromium on a real `mlflow server`: the systems view lists one row per (task, system), best first,
    with its rounded across-fold mean, CI and folds; the tasks view names each task's best system."""
    from benchmark.tracking.views import VIEW_SYSTEMS, VIEW_TASKS

    by_stage = stages(cv_run["uri"])
    experiment = MlflowClient(cv_run["uri"]).get_experiment_by_name("benchmark-tinycv").experiment_id
    pages = open_views(cv_run["uri"], experiment, [VIEW_SYSTEMS, VIEW_TASKS], tmp_path)
    text, shot = pages[VIEW_SYSTEMS]
    assert "Model registry" in text and "Judges" not in text, shot  # model-training navigation
    shown_columns = columns(text)
    assert shown_columns[:4] == ["mean", "mean_lo95", "mean_up95", "n"], text[:3000]
    assert {"split", "retrieval", "group", "task"} <= set(shown_columns)
    systems = sorted(by_stage[STAGE_SYSTEM], key=lambda r: -r.data.metrics["mean"])
    assert len(systems) == 4 and all("mlflow.parentRunId" not in r.data.tags for r in systems)  # top level: no click
    rows = []
    for run in systems:
        m, tags = run.data.metrics, run.data.tags
        full = m[f"cv.{tags['primary_metric'].replace('/', '.').replace('@', '_at_')}_mean"]
        assert m["mean"] == round(full, 3) and m["n"] == 6
        assert m["mean"] == full or repr(full) not in text  # the unrounded value is not what the user reads
        rows.append(row_cells(text, run))
        assert f"|{tags['system']}|" in text  # the run's name
    assert all(row in text for row in rows), (rows, shot)
    assert [text.index(row) for row in rows] == sorted(text.index(row) for row in rows)  # best first
    text, shot = pages[VIEW_TASKS]
    for parent in by_stage[STAGE_TASK]:
        tags = parent.data.tags
        best = next(r for r in systems if r.data.tags["task"] == tags["task"])  # the highest mean of that task
        assert tags["best"] == best.data.tags["system"] and f"|{tags['best']}|" in text, shot
        assert parent.data.metrics["mean"] == best.data.metrics["mean"]


def test_resume_reads_back_logged_fits_instead_of_refitting(cv_run, monkeypatch):
    import benchmark.run.cv as cv

    before = len(stages(cv_run["uri"])[STAGE_FIT])
    launched = []
    monkeypatch.setattr(cv, "run_fits", lambda jobs, final, on_done, **handles: launched.extend(jobs))
    monkeypatch.setenv("BENCHMARK_TASKS_DIR", str(cv_run["root"] / "tasks"))
    options = cv_run["options"]
    again = run_suite(options.model_copy(update={"resume": True}))
    assert launched == [] and len(stages(cv_run["uri"])[STAGE_FIT]) == before
    assert (
        again["tasks"]["tinycv-global"]["systems"]["tinycv-tuned"]["summary"]
        == cv_run["results"]["tasks"]["tinycv-global"]["systems"]["tinycv-tuned"]["summary"]
    )


def test_report_shows_the_comparison(cv_run, tmp_path):
    from benchmark.report.generate import generate_report

    written = generate_report(cv_run["uri"], out=tmp_path)
    text = written["markdown"].read_text()
    assert "## Repeated cross-validation" in text and "tinycv-global" in text and "group" in text
    for kind in ("folds", "differences", "tukey", "cd", "importance"):
        assert (tmp_path / f"cv_{kind}_tinycv-grouped.png").exists()
    importance = text.split("Which tuned parameters mattered")[1].split("\n\n")[1]
    row = next(line for line in importance.splitlines() if "loss/temperature" in line)
    saved = cv_run["results"]["tasks"]["tinycv-global"]["systems"]["tinycv-tuned"]["search"]["importance"]
    assert row.startswith("| tinycv-tuned | loss/temperature |") and f"{saved['loss/temperature']['mean']:.3f}" in row
    html = written["html"].read_text()
    assert "value per outer fold, tested once on that fold" in html and "seed means" not in html
    assert "tiny cv global task" in html  # the task's description, as in the markdown
    assert "Table 1" not in html and "Table 1" not in text  # no paper task ran: no empty section


def test_each_system_keeps_its_colour_in_every_figure_of_a_report(cv_run, tmp_path, monkeypatch):
    """Critical-difference diagrams used to colour systems by rank, so a system changed colour between tasks."""
    import scikit_posthocs

    from benchmark.report.collect import collect
    from benchmark.report.figures import figures

    drawn = []
    original = scikit_posthocs.critical_difference_diagram

    def spy(ranks, sig, **kwargs):
        drawn.append((dict(ranks), kwargs["color_palette"]))
        return original(ranks, sig, **kwargs)

    monkeypatch.setattr(scikit_posthocs, "critical_difference_diagram", spy)
    figures(collect(cv_run["uri"]), tmp_path)
    assert len(drawn) == 2  # one diagram per task
    palettes = [{s: palette[s] for s in ranks} for ranks, palette in drawn]
    assert palettes[0] == palettes[1] and len(set(palettes[0].values())) == len(palettes[0])


def test_a_killed_cv_run_resumes_with_each_fold_searched_to_its_budget(tmp_path, tiny_csv, cli_in_process):
    """SIGKILL mid-search, then --resume: every fold's study ends with exactly its budget, nothing logged twice."""
    import os
    import signal
    import subprocess
    import time

    folder = write_cv_suite(tmp_path / "tasks", tiny_csv, name="killcv", folds=2, budget=2, epochs=60, batch_size=16)
    env = {**os.environ, "BENCHMARK_TASKS_DIR": str(folder)}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = run_command("killcv", tmp_path, "--max-concurrent", "1")
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline, logged = time.time() + 300, 0
        while time.time() < deadline and proc.poll() is None and logged < 2:  # one trial x two tasks
            time.sleep(1)
            try:
                client = MlflowClient(uri)
                experiment = client.get_experiment_by_name("benchmark-killcv")
                logged = (
                    len(client.search_runs([experiment.experiment_id], "tags.stage = 'trial'")) if experiment else 0
                )
            except Exception:
                continue
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Ray Tune's experiment state cut short: refused with one line (it no longer matches its signature), instead of a
    # silently partial resume
    state = sorted((tmp_path / "out" / "ray").glob("*/experiment_state-*.json"))[-1]
    whole = state.read_bytes()
    state.write_bytes(whole[: len(whole) // 2])
    refused = cli_in_process(args + ["--resume"], env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert f"Ray Tune's state file {state} does not match its signature" in refused.stderr
    assert "without --resume (or with another --output)" in refused.stderr
    state.write_bytes(whole)
    done = cli_in_process(args + ["--resume"], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("benchmark-killcv").experiment_id], max_results=5000)
    logged = [r for r in runs if r.data.tags.get("stage") == "trial" and r.data.tags["task"] == "killcv-global"]
    ids = [r.data.tags["trial_id"] for r in logged]
    assert len(ids) == len(set(ids))  # none logged twice
    # a trial that finished after Tune's last saved state (written every ~10 s) is kept but tagged superseded
    trials = [r for r in logged if r.data.tags.get("superseded") != "true"]
    superseded = {r.data.tags["trial_id"] for r in logged} - {r.data.tags["trial_id"] for r in trials}
    assert Counter(r.data.tags["fold"] for r in trials) == {f"r0f{i}": 2 for i in range(2)}
    fits = Counter(
        (r.data.tags["task"], r.data.tags["system"], r.data.tags["fold"])
        for r in runs
        if r.data.tags.get("stage") == "fit"
    )
    assert len(fits) == 2 * 2 * 2 and set(fits.values()) == {1}  # tasks x systems x folds
    storage = f"sqlite:///{tmp_path / 'out' / 'optuna.db'}"
    studies = {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage)
        for s in optuna.get_all_study_summaries(storage)
    }
    # each fold's study: exactly its budget of trials Tune knows; those lost from its state are marked superseded
    # (a RUNNING one failed, a finished one listed on the study), and every logged trial is one of the known
    budgeted = {
        name: [
            t for t in study.trials if t.state.is_finished() and t.number not in study.user_attrs.get("superseded", [])
        ]
        for name, study in studies.items()
    }
    assert len(budgeted) == 2 and {len(t) for t in budgeted.values()} == {2}, budgeted
    known = {t.user_attrs["tune_trial_id"] for kept in budgeted.values() for t in kept}
    assert known == {r.data.tags["trial_id"] for r in trials} and not known & superseded
    assert not any(t.state.name == "RUNNING" for study in studies.values() for t in study.trials)
