"""Perf sections for whole runs: a suite's orchestration overhead, one node against two."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmark.cluster.local import RayCluster
from benchmark.perf.common import Report
from benchmark.run.options import RunOptions
from benchmark.run.result_schema import read_results
from benchmark.run.suite import run_suite
from benchmark.tasks.specs import TASKS_ENV, get_task


# ---------------------------------------------------------------------------------------- suite
def section_suite(report: Report, *, suite: str, data: str | None, minutes: float) -> None:
    """A whole suite run: wall time, what dominates, and orchestration overhead over bare compute."""

    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(
            suite=suite,
            data=data,
            tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            output=str(Path(tmp) / "out"),
            allow_download=False,
        )
        started = time.perf_counter()
        results = run_suite(options, progress=lambda line: None)
        wall = time.perf_counter() - started
    import ray  # ray: heavy, imported only when a study or cluster is used

    ray.shutdown()
    c = results["compute"]
    bare = c["trial_seconds"] + c["fit_seconds"] + c["prepare_seconds"]
    ideal = (c["trial_seconds"] + c["fit_seconds"]) / c["workers"] + c["prepare_seconds"]
    overhead = wall / ideal - 1 if ideal > 0 else float("nan")
    n_tasks = len(results["tasks"])
    report.add(
        f"## Whole suite: `run --suite {suite}`",
        "",
        f"{n_tasks} tasks, embedding cache warm, local Ray on {os.cpu_count()} CPUs ({c['workers']} workers at once), "
        "MLflow on sqlite. Bare compute: seconds inside Tune trials (Tune's time_total_s: training and per-epoch "
        "validation), inside fits (training and the one test evaluation), and data preparation. Ideal wall: "
        "trial and fit seconds spread over the workers, plus preparation. Overhead: wall over ideal wall, minus 1 "
        "(scheduling, Ray start, MLflow logging, statistics and idle workers at the end of each stage).",
        "",
        "| wall s | trial s | fit s | prepare s | bare total s | ideal wall s | overhead |",
        "|---|---|---|---|---|---|---|",
        f"| {wall:.0f} | {c['trial_seconds']:.0f} | {c['fit_seconds']:.0f} | {c['prepare_seconds']:.0f} | {bare:.0f} | "
        f"{ideal:.0f} | {100 * overhead:+.0f}% |",
        "",
    )
    report.target(f"suite `{suite}` within {minutes:g} minutes wall (measured {wall / 60:.1f})", wall <= 60 * minutes)
    report.target(
        f"orchestration overhead <= 20% of the bare compute (measured {100 * overhead:+.0f}%)", overhead <= 0.20
    )


# -------------------------------------------------------------------------------------- cluster
def _cluster_run(
    cluster, suite: str, data: str | None, tmp: Path, name: str, *, lose_worker: str | None = None
) -> dict:
    """`run --suite SUITE --address` as a user would (a subprocess), timed; trials per node from MLflow."""

    db = tmp / f"{name}.db"
    args = [
        sys.executable,
        "-m",
        "benchmark",
        "run",
        "--suite",
        suite,
        "--address",
        cluster.address,
        "--offline",
        "--output",
        str(tmp / name),
        "--tracking-uri",
        f"sqlite:///{db}",
    ] + (["--data", data] if data else [])
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lost_at = None
    if lose_worker:
        while cluster.alive_actors_on(lose_worker) == 0 and proc.poll() is None:  # a trial trains on the worker
            time.sleep(0.5)
        cluster.kill_worker(lose_worker)
        lost_at = time.perf_counter() - started
    out, _ = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"cluster run {name} failed:\n{out[-3000:]}")
    with sqlite3.connect(db) as con:
        per_node = con.execute(
            "select s.value, n.value, count(distinct t.value) from tags s join tags n on n.run_uuid = s.run_uuid "
            "join tags t on t.run_uuid = s.run_uuid join runs r on r.run_uuid = s.run_uuid "
            "where s.key = 'stage' and s.value in ('trial', 'fit') and n.key = 'ray.node_id' and r.lifecycle_stage "
            "= 'active' "
            "and t.key = (case s.value when 'trial' then 'trial_id' else 'mlflow.runName' end) group by s.value, "
            "n.value"
        ).fetchall()
        retried = con.execute("select count(*) from tags where key = 'attempts' and value != '1'").fetchone()[0]
    return {"wall": wall, "per_node": per_node, "retried": retried, "lost_at": lost_at}


def section_cluster(report: Report, *, suite: str, data: str | None) -> None:
    """The suite on a real multi-node cluster on this machine: 1 node vs 2 nodes (1 CPU each), and a lost node."""

    cluster = RayCluster()
    rows = []
    try:
        cluster.start_head()
        head = cluster.head_node()
        with tempfile.TemporaryDirectory() as tmp:
            one = _cluster_run(cluster, suite, data, Path(tmp), "one-node")
            worker = cluster.add_worker()
            two = _cluster_run(cluster, suite, data, Path(tmp), "two-nodes")
            spare = cluster.add_worker()  # the node that is lost; `worker` stays
            cluster.kill_worker(worker)
            lost = _cluster_run(cluster, suite, data, Path(tmp), "node-lost", lose_worker=spare)
    finally:
        cluster.stop()

    def nodes(run: dict) -> str:
        names = {head: "head"}
        parts = [f"{stage}s {names.get(node, 'worker')} {n}" for stage, node, n in sorted(run["per_node"])]
        return ", ".join(parts)

    for label, run in (
        ("1 node (head, 1 CPU)", one),
        ("2 nodes (head + worker, 1 CPU each)", two),
        ("2 nodes, the worker SIGKILLed mid-trial", lost),
    ):
        rows.append(
            f"| {label} | {run['wall']:.0f} | {nodes(run)} | {run['retried']} |"
            + (f" lost at {run['lost_at']:.0f} s |" if run["lost_at"] is not None else " |")
        )
    report.add(
        f"## Ray cluster: `run --suite {suite} --address` on this machine",
        "",
        f"Head and workers are separate raylets (`ray start`, token authentication, each node its own temp "
        f"folder), 1 CPU each, on this {os.cpu_count()}-core machine; embedding cache warm. Trials and fits per "
        "node from the runs' `ray.node_id` tags; a lost node is a SIGKILL to its raylet's process tree while a "
        "trial trains on it (its trials are retried on the head).",
        "",
        "| cluster | wall s | trials / fits per node | retried trials | |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Speed-up 1 -> 2 nodes: {one['wall'] / two['wall']:.2f}x; a lost node cost "
        f"{lost['wall'] - two['wall']:+.0f} s over the 2-node run.",
        "",
    )


# ------------------------------------------------------------------------------------- tuned fold
def section_tuned_fold(report: Report, *, system: str, task: str, floor: str, data: str | None, folds: int = 5) -> None:
    """What one outer fold's search costs: the default suite's tuned system on one repeat of a task's folds
    (the same data, space, budget and successive halving), run as a user runs a suite; per fold = run / folds."""
    spec = get_task(task).model_dump(mode="json")  # a bundled task or one of the user's folders
    # a suite compares at least two systems: `floor` is one that costs no training (both bundled: the task folder
    # written here adds to the bundled one)
    with tempfile.TemporaryDirectory() as tmp:
        folder, name = Path(tmp) / "tasks", f"{task}-1x{folds}"
        folder.mkdir()
        spec = {**spec, "name": name, "protocol": {**spec["protocol"], "folds": folds, "repeats": 1}}
        suite = {"description": f"{system} on {task}'s folds", "tasks": [name], "systems": [floor, system]}
        for file, content in (
            (f"{name}.yaml", spec),
            ("suites.yaml", {"tuned-fold": {**suite, "eval_every": 10}}),
        ):
            (folder / file).write_text(yaml.safe_dump(content))
        out = Path(tmp) / "out"
        args = [sys.executable, "-m", "benchmark", "run", "--suite", "tuned-fold", "--offline", "--output", str(out)]
        args += ["--tracking-uri", f"sqlite:///{Path(tmp) / 'mlflow.db'}"] + (["--data", data] if data else [])
        started = time.perf_counter()
        folders = os.pathsep.join(filter(None, [os.environ.get(TASKS_ENV), str(folder)]))  # added to the user's
        proc = subprocess.run(args, env={**os.environ, TASKS_ENV: folders}, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"tuned-fold run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        results = read_results(out / "results.json")
    c, search = results["compute"], results["tasks"][name]["systems"][system]["search"]
    spread = c["trial_seconds"] / c["workers"] + c["fit_seconds"] / c["workers"] + c["prepare_seconds"]
    report.add(
        f"## One tuned fold: `{system}` on `{task}`",
        "",
        f"The system as the default suite runs it ({search['configurations_per_fold']} configurations per fold, "
        f"successive halving {'on' if search['successive_halving'] else 'off'}) on {folds} folds of one repeat of "
        f"the task's split, run as `python -m benchmark run` (Ray Tune, Optuna, MLflow, then the {folds} final "
        f"fits; {c['workers']} workers, warm embedding cache; wall includes starting Python and Ray). Trial s: Tune's "
        "`time_total_s` summed over trials; orchestration: wall minus trial and fit seconds spread over the "
        "workers and minus data preparation (start-up, scheduling, MLflow logging, selection, statistics).",
        "",
        "| configurations per fold | trials | stopped early | wall s per fold | trial s per fold | fit s per fold "
        "| orchestration s per fold |",
        "|---|---|---|---|---|---|---|",
        f"| {search['configurations_per_fold']} | {search['trials']} | {search['stopped_early']} | {wall / folds:.1f} "
        f"| {c['trial_seconds'] / folds:.1f} | {c['fit_seconds'] / folds:.1f} | {(wall - spread) / folds:.1f} |",
        "",
    )
    report.target(
        f"`{system}` tries >= 32 configurations per fold (measured {search['configurations_per_fold']})",
        search["configurations_per_fold"] >= 32,
    )
