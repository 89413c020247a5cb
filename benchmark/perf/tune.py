"""Perf section for Ray Tune: the overhead of trials under Tune against bare trials."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmark.cluster.ray_cluster import init_ray
from benchmark.perf.common import Report, _median
from benchmark.tracking.store import Tracker
from benchmark.tuning.callback import TrialCallback
from benchmark.tuning.search import StudySettings
from benchmark.tuning.space import SearchSpace
from benchmark.tuning.trainable import TrialPayload, tuning_trial
from benchmark.tuning.tuner import make_tuner


# ----------------------------------------------------------------------------------------- tune
def section_tune(report: Report, setup, *, n_trials: int, epochs: int, eval_every: int, cores: int) -> None:
    from ray import tune  # ray: heavy, imported only when a study or cluster is used

    _, split, data = setup
    space = SearchSpace.model_validate(
        {
            "name": "perf",
            "base": {"optim": {"epochs": epochs}},
            "parameters": {"seed": {"type": "int", "low": 0, "high": 100000}},
        }
    )
    key = TrialPayload.key(space.trial_config({}))

    def payload(threads: int) -> TrialPayload:
        return TrialPayload(space, {key: data}, split, ["text_to_molecule/recall@1"], eval_every, threads=threads)

    def bare(threads: int, seed: int) -> float:
        started = time.perf_counter()
        tuning_trial({"seed": seed}, payload(threads), lambda result: None)
        return time.perf_counter() - started

    import ray  # ray: heavy, imported only when a study or cluster is used

    bare(cores, 10**6)  # warm-up: the first optimiser construction of a process imports for ~1.5 s
    bare_times = [bare(cores, seed) for seed in range(2)]  # two now, two after Tune (a shared VM drifts)
    started = time.perf_counter()
    init_ray(num_cpus=cores)
    ray_start = time.perf_counter() - started
    rows = []
    for cpus_per_trial in sorted({float(cores), 1.0}, reverse=True):
        threads = int(cpus_per_trial)
        with tempfile.TemporaryDirectory() as tmp:
            tracker = Tracker(f"sqlite:///{Path(tmp) / 'mlflow.db'}", "perf-tune")
            parent = tracker.start_run("perf-task", {"stage": "task"})
            callback = TrialCallback(
                tracker, {"perf": parent}, {"perf": "text_to_molecule/recall@1"}, "perf", space, progress=None
            )
            settings = StudySettings(
                name="perf-tune",
                storage_path=str(Path(tmp) / "ray"),
                num_samples=n_trials,
                cpus_per_trial=cpus_per_trial,
                max_reports=-(-epochs // eval_every),
            )
            tuner = make_tuner(
                tune.with_parameters(_timed_trainable, payload=payload(threads)), settings, space, callbacks=[callback]
            )
            started_at = time.time()
            grid = tuner.fit()
            wall = time.time() - started_at
            callback.flush()
        spans = sorted((r.metrics["trial_started"], r.metrics["trial_reported"]) for r in grid if r.error is None)
        start_up = spans[0][0] - started_at if spans else float("nan")
        at_once = max(1, int(cores // cpus_per_trial))
        per_trial = (wall - start_up) / max(len(spans), 1)  # machine time per trial, as for the bare trials
        rows.append((cpus_per_trial, at_once, threads, wall, start_up, per_trial, len(spans)))
    ray.shutdown()  # Ray's own processes would otherwise share the cores with the sections after this one
    bare_times += [bare(cores, seed) for seed in range(2, 4)]
    base = _median(bare_times)
    report.add(
        "## Ray Tune overhead",
        "",
        f"{n_trials} trials of the trial above ({epochs} epochs, validation every {eval_every} epochs, reported to "
        "Tune, "
        "logged to MLflow (sqlite) by the driver) through `make_tuner` (reused actors, OptunaSearch, embeddings in "
        f"the object store). Bare: the same trial body (`tuning_trial`) in this process, {cores} threads, one after "
        f"another: median {base:.2f} s (min {min(bare_times):.2f}, max {max(bare_times):.2f}; 2 runs before Tune and 2 "
        "after it, following a warm-up). "
        f"Ray start (one-off, not counted): {ray_start:.1f} s.",
        "",
        "| CPUs per trial | trials at once | threads per trial | fit wall s | first trial start s | "
        "machine s per trial (after start) | overhead vs bare | finished |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {c:g} | {k} | {t} | {w:.1f} | {s:.1f} | {p:.2f} | {100 * (p - base) / base:+.0f}% | {n}/{n_trials} |"
            for c, k, t, w, s, p, n in rows
        ],
        "",
        "Machine seconds per trial = (fit wall - time until the first trial starts: worker start-up and its first "
        "imports) / trials, compared with the bare trials run one after another on the same cores. With one trial "
        "at a time the difference is Tune's per-trial cost; with several at once it also shows how well concurrent "
        "single-thread trials share the cores.",
        "",
    )
    serial = rows[0]
    report.target(
        f"Tune per-trial overhead <= 15% of the bare trial at {n_trials} trials on {cores} CPUs "
        f"(measured {100 * (serial[5] - base) / base:+.0f}% one at a time)",
        serial[5] <= 1.15 * base,
    )


def _timed_trainable(config: dict, payload) -> None:
    from ray import tune  # ray: heavy, imported only when a study or cluster is used

    started = time.time()

    def report(result: dict) -> None:
        tune.report({**result, "trial_started": started, "trial_reported": time.time()})

    tuning_trial(config, payload, report)
