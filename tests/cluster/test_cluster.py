"""The suite on a real multi-node Ray cluster on this machine (`pytest -m cluster`).

A head and worker nodes are separate raylets started with `ray start`, as the README tells users, with
token authentication on and each node in its own temp folder (as on separate hosts). The suite runs as
users run it: `python -m benchmark run --address ...` and `ray job submit --working-dir`. Nodes are
lost by SIGKILL of their raylet's process tree; a node "on another host" is one whose mount namespace
hides the driver's folders (`unshare`), which is what a local path means to another host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from suite_helpers import TINY_SPACE, run_command, write_cv_suite, write_suite

from benchmark.cluster.local import RAY, RayCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("aiohttp_cors", reason="the [cluster] extra (ray[default]) runs the dashboard")
    ray_cluster = RayCluster()
    ray_cluster.start_head()
    ray_cluster.wait_for_job_agent()  # `ray job submit` right after the head starts can find no agent yet
    yield ray_cluster
    ray_cluster.stop()


@pytest.fixture
def worker(cluster):
    """A worker node for one test (killed after it, if the test did not)."""
    node_id = cluster.add_worker()
    yield node_id
    if node_id in cluster.workers:
        cluster.kill_worker(node_id)


def slow_suite(
    tmp_path: Path, tiny_csv: Path, cluster: RayCluster, *, name: str, epochs: int = 300, samples: int = 4
) -> dict:
    """A tiny holdout suite with trials of a few seconds, run against the cluster."""
    space = {**TINY_SPACE, "base": {**TINY_SPACE["base"], "optim": {"epochs": epochs, "batch_size": 16}}}
    folder = write_suite(tmp_path / "tasks", tiny_csv, space=space, samples=samples, name=name, prefix=name)
    args = run_command(name, tmp_path, "--address", cluster.address)
    return {
        "args": args,
        "env": {**cluster.env, "BENCHMARK_TASKS_DIR": str(folder)},
        "out": tmp_path / "out",
        "db": tmp_path / "mlflow.db",
        "log": tmp_path / "run.log",
        "name": name,
    }


def start(suite: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        suite["args"] + list(extra),
        env=suite["env"],
        stdout=open(suite["log"], "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )


def wait_for(suite: dict, proc: subprocess.Popen, text: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if text in suite["log"].read_text():
            return
        time.sleep(0.3)
    raise AssertionError(f"never saw {text!r}:\n" + suite["log"].read_text()[-3000:])


def trial_runs(db: Path) -> list[dict]:
    """Every trial run: its task, trial id, node, attempts and MLflow status."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "select r.run_uuid, r.status, t.key, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
            "where r.lifecycle_stage = 'active' "
            "and r.run_uuid in (select run_uuid from tags where key = 'stage' and value = 'trial')"
        )
        runs: dict[str, dict] = {}
        for run_id, status, key, value in rows:
            runs.setdefault(run_id, {"mlflow_status": status})[key] = value
    return list(runs.values())


def stages(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        return dict(
            con.execute(
                "select t.value, count(*) from tags t join runs r on r.run_uuid = t.run_uuid "
                "where t.key = 'stage' and r.lifecycle_stage = 'active' group by t.value"
            ).fetchall()
        )


def assert_each_trial_once(db: Path, tasks: int, trials: int) -> list[dict]:
    runs = trial_runs(db)
    keys = [(r["task"], r["trial_id"]) for r in runs]
    assert len(keys) == len(set(keys)) == tasks * trials, sorted(keys)
    assert all(r["mlflow_status"] == "FINISHED" and r["status"] == "finished" for r in runs)
    return runs


def test_a_small_suite_runs_on_both_nodes_and_resumes_after_the_driver_is_killed(cluster, worker, tmp_path, tiny_csv):
    suite = slow_suite(tmp_path, tiny_csv, cluster, name="clusterresume", epochs=200)
    proc = start(suite)
    wait_for(suite, proc, "trials: 1/")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver dies: no handler, no state written on the way out
    proc.wait(timeout=60)
    done = subprocess.run(
        suite["args"] + ["--resume"], env=suite["env"], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = assert_each_trial_once(suite["db"], tasks=2, trials=4)
    assert stages(suite["db"]) == {"task": 2, "trial": 8, "final": 4}
    # trials ran on both nodes, and each says where (node id and host in its MLflow tags)
    assert {r["ray.node_id"] for r in runs} == {cluster.head_node(), worker}
    assert all(r["ray.host"] == socket.gethostname() and r["ray.node_ip"] for r in runs)


def test_a_lost_worker_node_costs_a_retry_not_the_trial(cluster, worker, tmp_path, tiny_csv):
    suite = slow_suite(tmp_path, tiny_csv, cluster, name="clusterloss")
    proc = start(suite)
    deadline = time.time() + 180
    while cluster.alive_actors_on(worker) == 0:  # a trial is training on the worker
        assert time.time() < deadline and proc.poll() is None, suite["log"].read_text()[-3000:]
        time.sleep(0.5)
    cluster.kill_worker(worker)
    assert proc.wait(timeout=600) == 0, suite["log"].read_text()[-3000:]
    log = suite["log"].read_text()
    assert "retrying (attempt 2)" in log
    runs = assert_each_trial_once(suite["db"], tasks=2, trials=4)  # the retried trial is logged once
    retried = [r for r in runs if r["attempts"] != "1"]
    assert retried and all(r["ray.node_id"] == cluster.head_node() for r in retried)  # finished on the remaining node
    results = json.loads((suite["out"] / "results.json").read_text())
    assert results["tasks"]["clusterloss-global"]["trials"]["finished"] == 4


def test_job_submit_runs_a_cv_suite_on_the_cluster(cluster, worker, tmp_path, tiny_csv):
    """`ray job submit --working-dir` (the [cluster] extra's dashboard, token authentication) runs a repeated-CV
    suite (tuning per fold, then fits as Ray tasks) of the same shape as `quick`, on TF-IDF text to keep it short."""
    env_vars = {
        k: os.environ[k]
        for k in (
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "TOKENIZERS_PARALLELISM",
            "BENCHMARK_CACHE",
            "BENCHMARK_STATE_KEY_FILE",
        )
        if k in os.environ
    }
    env_vars["BENCHMARK_TASKS_DIR"] = str(write_cv_suite(tmp_path / "tasks", tiny_csv, name="jobcv", folds=2))
    db = tmp_path / "mlflow.db"
    done = subprocess.run(
        [
            RAY,
            "job",
            "submit",
            f"--address={cluster.dashboard}",
            "--working-dir",
            str(REPO),
            "--runtime-env-json",
            json.dumps({"env_vars": env_vars}),
            "--",
            "python",
            "-m",
            "benchmark",
            "run",
            "--suite",
            "jobcv",
            "--offline",
            "--output",
            str(tmp_path / "out"),
            "--tracking-uri",
            f"sqlite:///{db}",
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "succeeded" in done.stdout + done.stderr, done.stdout[-4000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["tasks"]) == {"jobcv-global", "jobcv-grouped"}
    assert stages(db)["task"] == 2 and stages(db)["fit"] > 0
    # every trial and fit says where it ran; together they used both nodes (the 4 fits are Ray tasks submitted at
    # once, one CPU each, on two 1-CPU nodes; the 4 tiny trials may all reuse the first actor that started)
    assert trial_runs(db)
    with sqlite3.connect(db) as con:
        nodes = con.execute(
            "select distinct n.value from tags n join tags s on s.run_uuid = n.run_uuid where n.key = 'ray.node_id' "
            "and s.key = 'stage' and s.value in ('trial', 'fit')"
        ).fetchall()
    assert {node for (node,) in nodes} == {cluster.head_node(), worker}


def test_a_local_output_is_refused_when_a_node_cannot_see_it(cluster, tmp_path, tiny_csv):
    hidden = tmp_path / "driver-only"
    hidden.mkdir()
    blind = cluster.add_worker(hide=hidden)  # this node's /tmp/.../driver-only is an empty tmpfs: another host's view
    try:
        suite = slow_suite(hidden, tiny_csv, cluster, name="clusterstorage", epochs=20, samples=2)
        done = subprocess.run(suite["args"], env=suite["env"], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert done.returncode != 0
        message = done.stderr
        assert "cannot see" in message and blind[:12] in message and "--storage" in message, message[-3000:]
        assert "s3://" in message and "Nothing was launched" in message
        assert "trials:" not in done.stdout and not (hidden / "out" / "ray").joinpath("clusterstorage").exists()
        # the fix: Ray Tune's storage on a folder every node sees
        shared = Path(tempfile.mkdtemp(prefix="shared", dir="/tmp"))
        try:
            done = subprocess.run(
                suite["args"] + ["--storage", str(shared)],
                env=suite["env"],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=REPO,
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert (shared / "clusterstorage").exists() or any(shared.iterdir())
        finally:
            shutil.rmtree(shared, ignore_errors=True)
    finally:
        cluster.kill_worker(blind)


def test_joining_without_the_token_names_authentication(cluster, tmp_path, tiny_csv):
    suite = slow_suite(tmp_path, tiny_csv, cluster, name="clusterauth", epochs=5, samples=1)
    for auth in ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},):  # a wrong token (no token: the worker below)
        env = {k: v for k, v in suite["env"].items() if not k.startswith("RAY_AUTH")} | auth
        started = time.time()
        done = subprocess.run(suite["args"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
        assert "authentication failed" in done.stderr and "RAY_AUTH_MODE=token" in done.stderr, done.stderr[-2000:]
        assert time.time() - started < 60  # named at once, not after Ray's minute of retries
    # a worker node without the token cannot join either, and Ray says why
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run(
        [RAY, "start", f"--address={cluster.address}", "--num-cpus=1", f"--temp-dir={cluster._temp('rx')}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0 and "Authentication" in done.stdout + done.stderr
