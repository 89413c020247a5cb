"""`python -m benchmark run` on a tiny suite: Ray Tune + Optuna + MLflow, end to end.

The suite's tasks read a ~100-pair slice of the real snapshot and use TF-IDF text, so that each
trial takes a fraction of a second.
"""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow_ui import SERVER_ENV
from suite_helpers import TINY_SPACE, run_command, write_suite

from benchmark.run.options import RunOptions
from benchmark.run.result_schema import SCHEMA_VERSION, check_results, read_results
from benchmark.run.suite import run_suite

pytestmark = pytest.mark.slow  # end to end (Ray, MLflow, subprocesses): pytest -m 'not slow' skips it


def runs_of(uri: str, experiment: str):
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)


def test_quick_run_logs_trials_finals_and_artifacts(tiny_run, ray_local, tiny_suite, tmp_path):
    uri, results = tiny_run["uri"], tiny_run["results"]  # the session's tiny run (conftest.py)
    runs = runs_of(uri, "benchmark-tiny")
    by_stage = {}
    for run in runs:
        by_stage.setdefault(run.data.tags["stage"], []).append(run)
    parents = {r.data.tags["task"]: r for r in by_stage["task"]}
    assert set(parents) == {"tiny-global", "tiny-grouped"}
    # every trial trained once, logged under each task of its split
    trial_ids = {r.data.tags["trial_id"] for r in by_stage["trial"]}
    assert len(trial_ids) == 4 and len(by_stage["trial"]) == 8
    assert all(
        r.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents.values()} for r in by_stage["trial"]
    )
    assert len(by_stage["final"]) == 4  # 2 tasks x 2 seeds
    glob = parents["tiny-global"]
    metrics = glob.data.metrics
    value = metrics["test.text_to_molecule.recall_at_1"]
    assert (
        metrics["test.text_to_molecule.recall_at_1_ci_low"]
        <= value
        <= metrics["test.text_to_molecule.recall_at_1_ci_high"]
    )
    assert metrics["test.text_to_molecule.recall_at_1_n"] > 5
    assert glob.data.params["chosen.loss.temperature"]
    assert (
        glob.data.tags["dataset_fingerprint"] and glob.data.tags["package_version"] and glob.data.tags["split_checksum"]
    )
    assert glob.data.tags["encoders"] == "ecfp4+tfidf" and by_stage["trial"][0].data.tags["encoders"] == "ecfp4+tfidf"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("benchmark-tiny")
    # MLflow 3's UI opens a model-development experiment on its runs (not on the GenAI trace overview)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"] == "Suite tiny: tiny test suite"
    artifacts = {a.path for a in client.list_artifacts(glob.info.run_id)}
    assert {
        "config.yaml",
        "final.json",
        "per_query_ranks.parquet",
        "cosine_heatmap.png",
        "recall_at_k.png",
    } <= artifacts
    trial_run = by_stage["trial"][0]
    assert len(client.get_metric_history(trial_run.info.run_id, "train.loss")) == 10  # per-epoch curve
    assert len(client.get_metric_history(trial_run.info.run_id, "val.text_to_molecule.recall_at_1")) == 2
    # results.json: per task the chosen configuration and final metrics in the single-configuration shape
    saved = read_results(tiny_run["out"] / "results.json")
    assert saved == json.loads(json.dumps(results)) and saved["schema_version"] == SCHEMA_VERSION
    check_results(saved)  # every key the run wrote is declared in the schema
    final = saved["tasks"]["tiny-grouped"]["final"]
    assert set(final["metrics"]) == {"text_to_molecule_grouped", "molecule_to_text_grouped"}
    assert set(final["metrics"]["text_to_molecule_grouped"]["recall@1"]) >= {
        "value",
        "ci_low",
        "ci_high",
        "n",
        "n_groups",
    }
    assert final["split"]["evaluated"] == "test" and final["seeds"] == [0, 1]
    assert any(line.startswith("[tiny-global, tiny-grouped] random split") for line in tiny_run["progress"])

    # a second run of the same suite (to a store of its own) encodes nothing
    again = run_suite(
        RunOptions(
            suite="tiny",
            tracking_uri=f"sqlite:///{tmp_path / 'again.db'}",
            output=str(tmp_path / "out2"),
            allow_download=False,
        )
    )
    assert all(t["final"]["timing"]["encoded_items"] == 0 for t in again["tasks"].values())


def test_a_crashing_trial_is_recorded_and_the_study_goes_on(ray_local, tmp_path, tiny_csv, monkeypatch):
    # memory_bank with 3 heads cannot split d = 32: such trials raise inside the worker
    space = {
        **TINY_SPACE,
        "terms": {},
        "parameters": {
            "bridge/head": {"type": "categorical", "choices": ["linear", "memory_bank"]},
            "bridge/memory_heads": {"type": "categorical", "choices": [3, 4]},
        },
    }
    folder = write_suite(tmp_path / "tasks", tiny_csv, space=space, samples=4, name="crashy", prefix="crashy")
    monkeypatch.setenv("BENCHMARK_TASKS_DIR", str(folder))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = run_suite(
        RunOptions(suite="crashy", tracking_uri=uri, output=str(tmp_path / "out"), allow_download=False, asha=True)
    )  # early stopping on the validation objective, with failures
    trials = results["tasks"]["crashy-global"]["trials"]
    assert trials["failed"] >= 1 and trials["finished"] >= 1 and trials["failed"] + trials["finished"] == 4
    runs = runs_of(uri, "benchmark-crashy")
    failed = [r for r in runs if r.data.tags.get("status") == "failed"]
    assert len(failed) == 2 * trials["failed"] and all(r.info.status == "FAILED" for r in failed)
    # retried by default (max_failures 2) but not trained again: the retries fail at once with the first error
    assert all(r.data.tags["attempts"] == "3" for r in failed)
    error_text = Path(failed[0].data.tags["error"]).read_text()
    assert error_text.count("Failure #") == 3 and "not trained again" in error_text
    finished = [r for r in runs if r.data.tags.get("status") == "finished" and r.data.tags.get("stage") == "trial"]
    assert finished and all(
        r.data.tags["attempts"] == "1" and r.data.tags["ray.node_id"] and r.data.tags["ray.host"] for r in finished
    )
    assert "final" in results["tasks"]["crashy-global"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(folder: Path, port: int) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server` on 127.0.0.1 over a sqlite store in `folder`, answering /health."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        + ["--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "art")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=SERVER_ENV,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("mlflow server did not start")


def stages_on_server(url: str, experiment: str) -> list[str]:
    """Every run's stage tag, read through the tracking server's REST API (what the UI and other clients see)."""
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}")
    experiment_id = json.load(urllib.request.urlopen(request))["experiment"]["experiment_id"]
    body = json.dumps({"experiment_ids": [experiment_id], "max_results": 1000}).encode()
    search = urllib.request.Request(
        f"{url}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
    )
    runs = json.load(urllib.request.urlopen(search))["runs"]
    return sorted(t["value"] for r in runs for t in r["data"]["tags"] if t["key"] == "stage")


def test_a_tracking_server_lost_mid_run_stops_it_cleanly_and_the_run_resumes(tmp_path, tiny_csv, cli_in_process):
    """A run logging to a real `mlflow server`, which is killed mid-study: bounded retries (seconds), then one line
    naming the server and the resume command, no traceback, no hang; with the server back, `--resume` finishes with
    each trial once, and the server's REST API lists every run."""
    space = {**TINY_SPACE, "base": {**TINY_SPACE["base"], "optim": {"epochs": 100, "batch_size": 16}}}
    folder = write_suite(
        tmp_path / "tasks", tiny_csv, space=space, samples=3, name="lost", prefix="lost", final_seeds=(0,)
    )
    port = free_port()
    server, url = start_mlflow_server(tmp_path, port)
    args = [sys.executable, "-m", "benchmark", "run", "--suite", "lost", "--tracking-uri", url, "--output"]
    args += [str(tmp_path / "out"), "--max-concurrent", "1", "--offline"]
    env = {**os.environ, "BENCHMARK_TASKS_DIR": str(folder)}
    log = tmp_path / "run.log"
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and "trials: 1/" not in log.read_text():
            time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)  # the server dies; the run goes on logging the next trial
        server.wait(timeout=30)
        started = time.time()
        assert proc.wait(timeout=420) == 2, log.read_text()[-3000:]  # 15 s alone; bounded, not minutes per call
        text = log.read_text()
        assert f"the MLflow tracking server {url} stopped answering" in text and "resume with: " in text, text[-3000:]
        assert "Traceback" not in text and time.time() - started < 420
        server, url = start_mlflow_server(tmp_path, port)  # back, on the same store
        done = cli_in_process(args + ["--resume"], env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        with sqlite3.connect(tmp_path / "server.db") as db:
            trials = db.execute(
                "select t.value, count(*) from tags t join runs r on r.run_uuid = t.run_uuid where t.key = "
                "'trial_id' and r.lifecycle_stage = 'active' group by t.value"
            ).fetchall()
            open_runs = db.execute(
                "select count(*) from runs where status = 'RUNNING' and lifecycle_stage = 'active'"
            ).fetchone()[0]
        assert len(trials) == 3 and {n for _, n in trials} == {2}  # three trials, each once per task
        assert open_runs == 0
        assert stages_on_server(url, "benchmark-lost") == ["final"] * 2 + ["task"] * 2 + ["trial"] * 6
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)


def test_unreachable_tracking_server_fails_before_training(tiny_suite, tmp_path):
    from benchmark.core.errors import BenchmarkError

    with pytest.raises(BenchmarkError, match="unreachable"):
        run_suite(RunOptions(suite="tiny", tracking_uri=f"http://127.0.0.1:{free_port()}", output=str(tmp_path / "o")))
    assert not (tmp_path / "o" / "ray").exists()


def test_interrupted_run_resumes_without_repeating_trials(tmp_path, tiny_csv, cli_in_process):
    space = {**TINY_SPACE, "base": {**TINY_SPACE["base"], "optim": {"epochs": 250, "batch_size": 16}}}
    folder = write_suite(tmp_path / "tasks", tiny_csv, space=space, samples=4, name="slow", prefix="slow")
    env = {**os.environ, "BENCHMARK_TASKS_DIR": str(folder)}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = run_command("slow", tmp_path, "--max-concurrent", "1")
    log_file = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    logged = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1)
        try:
            logged = len([r for r in runs_of(uri, "benchmark-slow") if r.data.tags.get("stage") == "trial"])
        except Exception:
            continue
        if logged >= 4:  # two trials x two tasks
            break
    assert proc.poll() is None, (
        "the run ended before it could be interrupted:\n" + (tmp_path / "first.log").read_text()[-3000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = cli_in_process(args + ["--resume"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = runs_of(uri, "benchmark-slow")
    trials = [r for r in runs if r.data.tags.get("stage") == "trial"]
    per_task = {}
    for run in trials:
        per_task.setdefault(run.data.tags["task"], []).append(run.data.tags["trial_id"])
    for task, ids in per_task.items():
        assert len(ids) == len(set(ids)) == 4, (task, ids)  # each finished trial once, none lost
    assert len([r for r in runs if r.data.tags.get("stage") == "task"]) == 2  # parents reused
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["tasks"]) == {"slow-global", "slow-grouped"}


def test_resources_the_cluster_cannot_hold_are_refused_before_anything_launches(ray_local, tiny_suite, tmp_path):
    from benchmark.core.errors import BenchmarkError

    with pytest.raises(BenchmarkError, match="asks for 1.0 GPU but the Ray cluster has 0"):
        run_suite(
            RunOptions(
                suite="tiny",
                tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                output=str(tmp_path / "o"),
                gpus_per_trial=1.0,
                allow_download=False,
            )
        )
    assert not (tmp_path / "o" / "ray").exists()
    assert not (tmp_path / "m.db").exists()  # refused before the tracking store is made


def test_two_runs_share_one_sqlite_store_at_once(tiny_suite, tmp_path):
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "BENCHMARK_TASKS_DIR": str(tiny_suite)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmark",
                "run",
                "--suite",
                "tiny",
                "--tracking-uri",
                uri,
                "--output",
                str(tmp_path / f"out{i}"),
                "--offline",
                "--cpus-per-trial",
                "1",
                "--max-concurrent",
                "1",  # one trial worker per run: the two runs together are what write the store at once
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-1500:] for o in outputs)
    runs = runs_of(uri, "benchmark-tiny")
    stages = [r.data.tags["stage"] for r in runs]
    assert stages.count("task") == 4 and stages.count("trial") == 16 and stages.count("final") == 8
    assert len({r.data.tags["run_uid"] for r in runs}) == 2


def test_one_run_per_output_folder_at_a_time(tiny_suite, tmp_path):
    """A second run on a folder that a live run holds is refused, naming the holder; nothing of it is touched."""
    from filelock import FileLock

    from benchmark.core.errors import BenchmarkError

    out = tmp_path / "out"
    out.mkdir()
    holder = {"pid": 4242, "host": "node-a", "started": "2026-11-22T01:00:00", "command": "python -m benchmark run"}
    (out / "run.lock.json").write_text(json.dumps(holder))
    (out / "run_state.json").write_text('{"run_uid": "abc", "suite": "tiny"}')
    held = FileLock(str(out / "run.lock"))
    held.acquire()
    try:
        with pytest.raises(BenchmarkError, match=r"in use by another run \(pid 4242 on node-a"):
            run_suite(
                RunOptions(
                    suite="tiny", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", output=str(out), allow_download=False
                )
            )
    finally:
        held.release()
    assert json.loads((out / "run_state.json").read_text())["run_uid"] == "abc"  # the holder's state is intact
    assert not (tmp_path / "m.db").exists()


def test_a_failure_mid_run_leaves_no_mlflow_run_running(ray_local, tiny_suite, tmp_path, monkeypatch):
    """The finals crash after the study logged its parents and trials: the error surfaces, and every run of this
    run_uid is ended FAILED (not left RUNNING in the MLflow UI)."""
    import benchmark.run.holdout as runner

    def broken_finals(*args, **kwargs):
        raise RuntimeError("disk full while training the finals")

    monkeypatch.setattr(runner, "run_finals", broken_finals)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError, match="disk full"):
        run_suite(
            RunOptions(suite="tiny", tracking_uri=uri, output=str(tmp_path / "out"), allow_download=False),
            progress=lambda line: None,
        )
    runs = runs_of(uri, "benchmark-tiny")
    assert [r for r in runs if r.data.tags["stage"] == "task"]
    assert {r.info.status for r in runs} <= {"FINISHED", "FAILED"}
    assert {r.info.status for r in runs if r.data.tags["stage"] == "task"} == {"FAILED"}
