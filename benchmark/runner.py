"""`python -m benchmark run`: every task of a suite tuned on validation data, tested once, logged.

`run_suite` reads as its stages: start (validate options, tracking store, run state, Ray), plan
(tasks grouped by dataset, split and protocol), then per group either

- holdout (the paper's protocol): embeddings once (cache), a Ray Tune study with Optuna search
  trains bridges and reports validation metrics, each task picks its best trial by its own
  primary metric (validation only), the chosen configuration is retrained with the task's final
  seeds and evaluated once on the test side; or
- repeated cross-validation (`benchmark.cv`): the suite's systems on the same folds, tuned
  inside each fold where they have a search space, each fit tested once, then compared;

and everything goes to MLflow (parent run per task, child runs below it) and `results.json`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field
from pathlib import Path

import yaml

from benchmark.cache import EmbeddingCache, atomic_write_bytes
from benchmark.cluster import is_uri
from benchmark.config import TrialConfig, flatten, short_config
from benchmark.data.loaders import load_dataset
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.finals import FinalOutcome, per_query_frame, run_finals
from benchmark.interrupts import Interrupted, StopRequested, StopSignal, fit_study
from benchmark.search_space import load_search_space
from benchmark.splits import make_split
from benchmark.names import (TAG_NOTE, HOLDOUT, STAGE_FINAL, STAGE_FIT, STAGE_TASK, STAGE_TRIAL, TAG_CHOSEN_CONFIG, TAG_ENCODERS, TAG_FINAL_SEEDS,
                             TAG_LEAKY, TAG_PRIMARY, TAG_PROTOCOL, TAG_RUN_UID, TAG_SPLIT_CHECKSUM, TAG_STAGE, TAG_TASK,
                             TAG_TEXT_FIELD)
from benchmark.views import save_views
from benchmark.tasks import SuiteSpec, TaskSpec, get_suite, get_system, get_task
from benchmark.tracking import Tracker, check_reachable, check_tracking_uri, default_tracking_uri, flatten_metrics, git_commit, parquet_bytes
from benchmark.trial import prepare_trial_data

from benchmark.tuning import select_best

log = logging.getLogger(__name__)
STATE_FILE = "run_state.json"


class RunOptions(BaseModel):
    """The options of one `run`: the one settings model that the CLI, the library and the stages read.

    Suites give defaults (search space, budget, concurrency); an option set here overrides them.
    Values are validated when the options are made, so a bad flag fails before anything starts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str = "default"
    data: str | None = None
    tracking_uri: str | None = None
    output: str = "results"
    resume: bool = False
    address: str | None = None
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    num_samples: int | None = Field(None, ge=1)  # holdout: trials per split; CV: trials per fold
    time_budget_s: float | None = Field(None, gt=0)
    max_concurrent: int | None = Field(None, ge=1)
    search_space: str | None = None
    asha: bool | None = None
    seed: int = 0
    cache_dir: str | None = None
    allow_download: bool = True
    max_failures: int = Field(2, ge=0)
    storage: str | None = None  # Ray Tune's storage; None: OUTPUT/ray


#: run options and the flags that set them (messages naming the flag, the --resume command)
RUN_FLAGS = {"suite": "--suite", "data": "--data", "tracking_uri": "--tracking-uri", "output": "--output",
             "resume": "--resume", "address": "--address", "cpus_per_trial": "--cpus-per-trial",
             "gpus_per_trial": "--gpus-per-trial", "num_samples": "--num-samples", "time_budget_s": "--time-budget",
             "max_concurrent": "--max-concurrent", "search_space": "--search-space", "asha": "--asha", "seed": "--seed",
             "cache_dir": "--cache-dir", "max_failures": "--max-failures", "storage": "--storage"}


def resume_command(options: RunOptions) -> str:
    """The command line that continues this run: every option that differs from its default, and --resume."""
    import shlex

    parts = ["python", "-m", "benchmark", "run"]
    defaults = RunOptions()
    for name, flag in RUN_FLAGS.items():
        value = getattr(options, name)
        if name == "resume" or value == getattr(defaults, name):
            continue
        if name == "output":
            value = str(Path(value).resolve())
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, shlex.quote(str(value))]
    if not options.allow_download:
        parts.append("--offline")
    return " ".join(parts + ["--resume"])


def _load_state(output: Path, options: RunOptions) -> dict:
    path = output / STATE_FILE
    if options.resume:
        if not path.exists():
            raise BenchmarkError(f"nothing to resume in {output}: no {STATE_FILE}; run without --resume first")
        state = json.loads(path.read_text())
        if state["suite"] != options.suite:
            raise ConfigError(f"{output} holds a run of suite {state['suite']!r}, not {options.suite!r}")
        return state
    if path.exists():
        log.info("starting a new run in %s (the previous state is replaced; use --resume to continue it)", output)
    state = {"run_uid": uuid.uuid4().hex[:12], "suite": options.suite, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_bytes(path, json.dumps(state, indent=2).encode())
    return state


def _parent_run(tracker: Tracker, task: TaskSpec, state: dict, suite: SuiteSpec, dataset, tags: dict) -> str:
    """The task's parent run (found again on --resume)."""
    existing = tracker.find_run(**{TAG_RUN_UID: state["run_uid"], TAG_TASK: task.name, TAG_STAGE: STAGE_TASK})
    if existing:
        return existing
    from benchmark import __version__

    run_id = tracker.start_run(task.name, {
        TAG_RUN_UID: state["run_uid"], TAG_STAGE: STAGE_TASK, TAG_TASK: task.name, "suite": suite.name,
        "split": task.split.name, TAG_LEAKY: task.leaky, "retrieval": task.retrieval, TAG_PROTOCOL: HOLDOUT,
        TAG_PRIMARY: task.primary_key, "dataset_fingerprint": dataset.fingerprint,
        TAG_TEXT_FIELD: task.dataset.text_field, "dataset": dataset_name(task), "package_version": __version__, "git_commit": git_commit(),
        TAG_NOTE: task.description, **tags,
    })
    params = {f"task.{k}": v for k, v in flatten(task.model_dump()).items()}
    tracker.log(run_id, params=params)
    tracker.log_dataset(run_id, dataset, dataset_name(task))
    return run_id


def dataset_name(task: TaskSpec) -> str:
    """What the MLflow Dataset column shows: the registered name, or the file's name."""
    return task.dataset.name if task.dataset.source == "default" else Path(task.dataset.path).name


def _final_json(task: TaskSpec, outcome: FinalOutcome, data, split, dataset) -> dict:
    modes = {task.mode(d) for d in task.directions}
    pick = lambda metrics: {m: v for m, v in metrics.items() if m in modes}  # noqa: E731
    return {
        "dataset": {**dataset.summary(), "n_texts": len(data.texts)},
        "split": {**split.summary(), "evaluated": "test"},
        "config": outcome.config.model_dump(),
        "config_digest": outcome.config.digest(),
        "encoders": data.encoders,
        "seeds": outcome.seeds,
        "timing": {"encode_seconds": round(data.encode_seconds, 3), "encoded_items": data.encoded_items,
                   "train_seconds": round(outcome.train_seconds, 3), "eval_seconds": round(outcome.eval_seconds, 3)},
        "metrics": pick(outcome.metrics),
        "baseline": pick(outcome.baseline),
        "comparisons": {k: v for k, v in outcome.comparisons.items() if k.split("/")[0] in modes},
        "seed_values": pick(outcome.seed_values),
    }


def _log_finals(tracker: Tracker, parent: str, task: TaskSpec, outcome: FinalOutcome, final: dict, data, split,
                state: dict) -> None:
    from benchmark import plots

    for seed, result in zip(outcome.seeds, outcome.per_seed, strict=True):
        if tracker.find_run(**{TAG_RUN_UID: state["run_uid"], TAG_TASK: task.name, TAG_STAGE: STAGE_FINAL,
                               "seed": str(seed)}):
            continue
        child = tracker.start_run(f"final seed {seed}", {
            TAG_RUN_UID: state["run_uid"], TAG_TASK: task.name, TAG_STAGE: STAGE_FINAL, "seed": seed,
            TAG_NOTE: f"The configuration chosen on validation, retrained with seed {seed} and tested once on "
                      f"{task.name}'s test split.",
            TAG_ENCODERS: f"{outcome.config.mol_encoder.name}+{outcome.config.text_encoder.name}"}, parent_id=parent)
        tracker.log(child, params=outcome.config.model_copy(update={"seed": seed}).flat(),
                    metrics={**flatten_metrics(result.metrics, "test"), **flatten_metrics(result.baseline, "baseline.test")},
                    steps={"train.loss": [(h["epoch"], h["loss"]) for h in result.history]})
        tracker.end(child)
    metrics = {**flatten_metrics(final["metrics"], "test"), **flatten_metrics(final["baseline"], "baseline.test")}
    for key, diff in final["comparisons"].items():
        base = f"compare.{key.replace('/', '.').replace('@', '_at_')}"
        metrics.update({f"{base}.difference": diff["difference"], f"{base}.ci_low": diff["ci_low"],
                        f"{base}.ci_high": diff["ci_high"], f"{base}.p_value": diff["p_value"]})
    tracker.log(parent, params={f"chosen.{k}": v for k, v in outcome.config.flat().items() if k != "seed"},
                metrics=metrics, tags={TAG_FINAL_SEEDS: ",".join(map(str, outcome.seeds)),
                                       "chosen_encoders": f"{outcome.config.mol_encoder.name}+{outcome.config.text_encoder.name}",
                                       TAG_CHOSEN_CONFIG: short_config(outcome.config)})
    tracker.log_text(parent, yaml.safe_dump(outcome.config.model_dump(), sort_keys=True), "config.yaml")
    tracker.log_text(parent, json.dumps(final, indent=2), "final.json")
    tracker.log_bytes(parent, parquet_bytes(per_query_frame(outcome, data)), "per_query_ranks.parquet")
    first = outcome.per_seed[0]
    if "bridge" in first.extras:
        rows = split.test
        before = plots.pair_similarities(first.extras["untrained_bridge"], data, rows)
        after = plots.pair_similarities(first.extras["bridge"], data, rows)
        tracker.log_bytes(parent, plots.cosine_heatmaps(before, after, f"{task.name}: first {len(after)} test pairs"),
                          "cosine_heatmap.png")
    curves = {f"{mode} (seed {outcome.seeds[0]})": run.recall_curve() for mode, run in first.runs.items()
              if mode.startswith("text_to_molecule")}
    tracker.log_bytes(parent, plots.recall_curves(curves, f"{task.name}: Recall@k"), "recall_at_k.png")


def format_summary(results: dict) -> str:
    lines = [f"{'task':<26}{'primary metric':<34}{'mean':>7}  {'95% CI':<17}{'n':>8}  chosen configuration", "-" * 120]
    for name, entry in results["tasks"].items():
        if "systems" in entry:
            lines += _cv_summary_lines(name, entry)
            continue
        if "final" not in entry:
            lines.append(f"{name:<26}(no final: {entry.get('error', 'interrupted')}; {_trial_counts(entry['trials'])})")
            continue
        key = entry["primary_metric"]
        mode, metric = key.split("/")
        value = entry["final"]["metrics"][mode][metric]
        n = f"{value['n']}" + (f"/{value['n_groups']}g" if "n_groups" in value else "")
        leak = " LEAKY" if entry["leaky"] else ""
        lines.append(f"{name + leak:<26}{key:<34}{value['value']:>7.3f}  [{value['ci_low']:.3f}, {value['ci_high']:.3f}]"
                     f"{n:>9}  {entry['chosen']['short']}")
        trials = entry["trials"]
        if trials.get("planned") and trials["finished"] < trials["planned"]:
            lines.append(f"{'':<26}({_trial_counts(trials)})")
    return "\n".join(lines)


def _trial_counts(trials: dict) -> str:
    """'2 of 4 trials finished, 0 failed, 1 interrupted; stopped by the time budget' (results.json's counts)."""
    text = (f"{trials['finished']} of {trials.get('planned', '?')} trials finished, {trials['failed']} failed, "
            f"{trials.get('interrupted', 0)} interrupted")
    return text + ("; stopped by the time budget" if trials.get("stopped_by") else "")


def _cv_summary_lines(name: str, entry: dict) -> list[str]:
    key = entry["primary_metric"]
    comparison = entry["comparison"].get(key)
    letters = comparison["letters"] if comparison else {}
    order = [s["system"] for s in comparison["systems"]] if comparison else list(entry["systems"])
    p = entry["protocol"]
    lines = [f"{name:<26}{key:<34}repeated CV {p['folds']}x{p['repeats']}; "
             + (f"{comparison['test']} ({comparison['reason']})" if comparison else "no comparison")]
    for system in order:
        summary = entry["systems"][system]["summary"][key]
        lines.append(f"  {system:<24}{'':<34}{summary['mean']:>7.3f}  [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}]"
                     f"{summary['n_folds']:>6} folds  group {letters.get(system, '-')}")
    return lines


@dataclass
class RunContext:
    """What every stage of one run shares."""

    options: RunOptions
    suite: SuiteSpec
    tracker: Tracker
    state: dict
    output: Path
    cache: EmbeddingCache
    progress: Callable[[str], None]
    #: bare compute of the run, for the orchestration overhead in `perf`: seconds inside trials (Tune's
    #: time_total_s), inside fits (train + test), and preparing data
    compute: dict = field(default_factory=lambda: {"trial_seconds": 0.0, "fit_seconds": 0.0, "prepare_seconds": 0.0})
    lock: object = None  # the output folder's lock, held for the whole run
    stop: StopSignal = field(default_factory=StopSignal)

    def save_state(self) -> None:
        atomic_write_bytes(self.output / STATE_FILE, json.dumps(self.state, indent=2, default=float).encode())

    def parent_run(self, task: TaskSpec, dataset, tags: dict) -> str:
        return _parent_run(self.tracker, task, self.state, self.suite, dataset, tags)


LOCK_FILE = "run.lock"


def lock_output(output: Path):
    """One run per output folder at a time: an OS lock (released even when the holder is killed), and beside
    it who holds it, for the message a second run gets."""
    import os
    import socket
    import sys

    from filelock import FileLock, Timeout

    lock = FileLock(str(output / LOCK_FILE))
    holder = output / (LOCK_FILE + ".json")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = json.loads(holder.read_text()) if holder.exists() else {}
        raise BenchmarkError(
            f"{output} is in use by another run (pid {who.get('pid', '?')} on {who.get('host', '?')}, started "
            f"{who.get('started', '?')}: {who.get('command', '?')}); wait for it to finish, or pass another --output"
        ) from None
    atomic_write_bytes(holder, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                           "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                           "command": " ".join(sys.argv)}).encode())
    return lock


def _start(options: RunOptions, progress: Callable[[str], None]) -> tuple[RunContext, list[TaskSpec]]:
    """Stage: validate the suite, lock the output folder, open the tracking store and the run state, start Ray."""
    suite = get_suite(options.suite)
    tasks = [get_task(name) for name in suite.tasks]
    # every search space the run will use is read now: a bad one fails before any store, run or Ray starts
    if suite.systems:
        for name in suite.systems:
            load_search_space(get_system(name).search_space)
    else:
        load_search_space(options.search_space or suite.search_space)
    tracking_uri = check_tracking_uri(options.tracking_uri or default_tracking_uri())
    cache = (EmbeddingCache(options.cache_dir) if options.cache_dir else EmbeddingCache()).check_writable()
    check_reachable(tracking_uri)
    output = Path(options.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    lock = lock_output(output)
    try:
        return _open(options, progress, suite, tasks, tracking_uri, output, lock, cache), tasks
    except BaseException:
        lock.release()
        raise


def _open(options: RunOptions, progress, suite: SuiteSpec, tasks: list[TaskSpec], tracking_uri: str, output: Path,
          lock, cache: EmbeddingCache) -> RunContext:
    from benchmark.cluster import check_resources, check_storage_shared, init_ray

    state = _load_state(output, options)
    tracker = Tracker(tracking_uri, f"benchmark-{suite.name}", description=f"Suite {suite.name}: {suite.description}")
    tracker.experiment_id  # noqa: B018 - fail now, not after training, if the store is unusable
    if options.resume:  # a driver killed outright (SIGKILL, a lost head) leaves its last writes RUNNING
        cut = sum(tracker.delete_open_runs(**{TAG_RUN_UID: state["run_uid"], TAG_STAGE: stage})
                  for stage in (STAGE_TRIAL, STAGE_FINAL, STAGE_FIT))
        if cut:
            progress(f"resume: {cut} MLflow run(s) cut off when the previous driver was killed are deleted "
                     "and logged again whole")
    init_ray(options.address)
    check_resources(options.cpus_per_trial, options.gpus_per_trial)
    check_storage_shared(tune_storage(options, output), flag="--storage" if options.storage else "--output or --storage")
    return RunContext(options, suite, tracker, state, output, cache, progress, lock=lock)


def tune_storage(options: RunOptions, output: Path) -> str:
    """Where Ray Tune keeps experiment state: --storage (a shared folder or a URI), else OUTPUT/ray."""
    if options.storage:
        return options.storage if is_uri(options.storage) else str(Path(options.storage).resolve())
    return str(output / "ray")


def _plan(tasks: list[TaskSpec]) -> dict[str, list[TaskSpec]]:
    """Stage: tasks with equal split keys (dataset, split, protocol) share folds, trials and fits."""
    groups: dict[str, list[TaskSpec]] = {}
    for task in tasks:
        groups.setdefault(task.split_key(), []).append(task)
    return groups


def _study_settings(ctx: RunContext, name: str, space, num_samples: int, asha: bool):
    from benchmark.tuning import StudySettings

    options, suite = ctx.options, ctx.suite
    max_epochs = max(space.trial_config({}).optim.epochs, 1)
    return StudySettings(
        name=name, storage_path=tune_storage(options, ctx.output), num_samples=num_samples,
        time_budget_s=options.time_budget_s or suite.time_budget_s,
        max_concurrent=options.max_concurrent or suite.max_concurrent, cpus_per_trial=options.cpus_per_trial,
        gpus_per_trial=options.gpus_per_trial, asha=asha, max_reports=-(-max_epochs // suite.eval_every),
        seed=options.seed, optuna_storage=f"sqlite:///{ctx.output / 'optuna.db'}", max_failures=options.max_failures,
    )


def _run_cv_group(ctx: RunContext, key: str, group: list[TaskSpec], dataset) -> dict:
    from benchmark import cv

    systems = cv.load_systems([get_system(name) for name in ctx.suite.systems])
    # ASHA would compare trials of different folds (different validation sets): never under CV
    settings_for = lambda system: _study_settings(  # noqa: E731
        ctx, f"{ctx.suite.name}-{group[0].split.name}-cv-{system.name}-{key}", system.space,
        ctx.options.num_samples or system.spec.num_samples, asha=False)
    return cv.run_group(ctx, group, dataset, systems, settings_for)


def _run_holdout_group(ctx: RunContext, key: str, group: list[TaskSpec], dataset) -> dict:
    from ray import tune

    from benchmark.tuning import TrialCallback, TrialPayload, bridge_trainable, make_tuner

    options, suite, tracker, state, progress = ctx.options, ctx.suite, ctx.tracker, ctx.state, ctx.progress
    space = load_search_space(options.search_space or suite.search_space)
    mol_choices, text_choices = space.encoder_choices()
    first = group[0]
    split = make_split(dataset, first.split.name, first.split.seed, first.split.fractions)
    progress(f"[{', '.join(t.name for t in group)}] {split.name} split {split.checksum}: train {len(split.train)}, "
             f"val {len(split.val)}, test {len(split.test)} pairs{' (LEAKY)' if split.leaky else ''}")
    datas = {}
    for mol in mol_choices:
        for text in text_choices:
            cfg = TrialConfig(mol_encoder=mol, text_encoder=text, text_field=first.dataset.text_field)
            datas[TrialPayload.key(cfg)] = prepare_trial_data(dataset, cfg, split, cache=ctx.cache)
    encoded = sum(d.encoded_items for d in datas.values())
    progress(f"  embeddings: {len(datas)} encoder pair(s), {encoded} items encoded "
             f"({sum(d.encode_seconds for d in datas.values()):.1f}s; the rest from the cache)")
    encoders = ", ".join(f"{m['name']}+{t['name']}" for m in mol_choices for t in text_choices)
    parents = {t.name: ctx.parent_run(t, dataset, {TAG_SPLIT_CHECKSUM: split.checksum, "search_space": space.name,
                                                   TAG_ENCODERS: encoders}) for t in group}
    payload = TrialPayload(space, datas, split, [t.primary_key for t in group], suite.eval_every,
                           threads=int(max(1, options.cpus_per_trial)))
    settings = _study_settings(ctx, f"{suite.name}-{split.name}-{key}", space, options.num_samples or suite.num_samples,
                               asha=suite.asha if options.asha is None else options.asha)
    callback = TrialCallback(tracker, parents, {t.name: t.primary_key for t in group}, state["run_uid"], space, progress,
                             planned=settings.num_samples, label=f"{split.name} split: {', '.join(t.name for t in group)}")
    if ctx.stop.requested:
        raise StopRequested(f"before tuning {', '.join(t.name for t in group)}")
    tuner = make_tuner(tune.with_parameters(bridge_trainable, payload=payload), settings, space,
                       callbacks=[callback], resume=options.resume)
    grid, study = fit_study(ctx, tuner, callback, settings.num_samples, settings.time_budget_s)
    finals: dict[str, FinalOutcome] = {}
    results = {}
    for task in group:
        entry = {"description": task.description, "primary_metric": task.primary_key, "leaky": task.leaky,
                 "trials": study.as_dict()}
        if task.name in ctx.state.get("tasks_done", {}):  # final before an interruption: not again
            results[task.name] = ctx.state["tasks_done"][task.name]
            continue
        if ctx.stop.requested:  # no final starts after a Ctrl-C; tasks already final stay
            left = {t.name: {**entry, "description": t.description, "primary_metric": t.primary_key,
                             "leaky": t.leaky, "error": "interrupted before its final fits"}
                    for t in group if t.name not in results}
            raise StopRequested(f"{_trial_counts(study.as_dict())}; finals of {', '.join(left)} not run",
                                {**results, **left})
        chosen = select_best(grid, f"val/{task.primary_key}", exclude=set(study.interrupted))
        if chosen is None:
            entry["error"] = ("every trial failed" if study.failed
                              else "no trial finished within the time budget; raise --time-budget")
            tracker.end(parents[task.name], "FAILED")
            results[task.name] = entry
            continue
        config_dict, trial_id, val_value = chosen
        cfg = space.trial_config(config_dict)
        digest = f"{cfg.digest()}-{','.join(map(str, task.final_seeds))}"
        if digest not in finals:
            progress(f"  final: {task.name} <- trial {trial_id} (val {task.primary_key} {val_value:.3f}); "
                     f"seeds {list(task.final_seeds)} on the test side")
            final_started = time.perf_counter()
            finals[digest] = run_finals(cfg, datas[TrialPayload.key(cfg)], split, list(task.final_seeds),
                                        n_boot=task.bootstrap.n_boot, bootstrap_seed=task.bootstrap.seed)
            ctx.compute["fit_seconds"] += time.perf_counter() - final_started
        else:
            progress(f"  final: {task.name} <- trial {trial_id} (val {task.primary_key} {val_value:.3f}); "
                     "same configuration and seeds as above: trained once, evaluated in this task's mode")
        outcome = finals[digest]
        data = datas[TrialPayload.key(cfg)]
        final = _final_json(task, outcome, data, split, dataset)
        entry["chosen"] = {"trial_id": trial_id, "val_value": val_value, "short": short_config(cfg),
                           "config": cfg.model_dump()}
        entry["final"] = final
        _log_finals(tracker, parents[task.name], task, outcome, final, data, split, state)
        tracker.end(parents[task.name])
        results[task.name] = entry
        state.setdefault("tasks_done", {})[task.name] = entry
        ctx.save_state()
    return results


def _load_group_dataset(ctx: RunContext, task: TaskSpec, loaded: dict):
    """Stage: the group's dataset (each registered dataset loaded once per run)."""
    from benchmark import datasets

    spec = task.dataset
    if spec.source == "file":
        return load_dataset(Path(spec.path), split_column=spec.split_column, max_heavy_atoms=spec.max_heavy_atoms)
    key = (spec.name, spec.max_heavy_atoms)
    if key not in loaded:
        loaded[key] = datasets.load(spec.name, data=ctx.options.data, allow_download=ctx.options.allow_download,
                                    max_heavy_atoms=spec.max_heavy_atoms)
    return loaded[key]


def run_suite(options: RunOptions, progress: Callable[[str], None] | None = None) -> dict:
    """Run a suite. A first Ctrl-C ends it with `Interrupted` (results so far written, the --resume command in
    the message); a failure ends every MLflow run it left open as FAILED."""
    from benchmark.tuning import say

    stop = StopSignal()
    with stop.installed():
        ctx, tasks = _start(options, progress or say)
        ctx.stop = stop
        try:
            return _run_groups(ctx, tasks, options)
        except (Exception, StopRequested):
            _end_open_runs(ctx, "FAILED")
            raise
        except KeyboardInterrupt:  # a second Ctrl-C: mark the open runs and go (a resume reopens them)
            _end_open_runs(ctx, "KILLED")
            raise
        finally:
            ctx.lock.release()


def _end_open_runs(ctx: RunContext, status: str) -> None:
    """No run of this run_uid stays RUNNING in MLflow after the run stops (a resume reopens the parents)."""
    try:
        for run_id in ctx.tracker.open_runs(**{TAG_RUN_UID: ctx.state["run_uid"]}):
            ctx.tracker.end(run_id, status)
    except Exception as exc:  # the store itself may be why the run failed
        log.warning("could not mark the open MLflow runs %s: %s", status, exc)


def _run_groups(ctx: RunContext, tasks: list[TaskSpec], options: RunOptions) -> dict:
    """Stages per task group, then results.json. Groups finished earlier in this run (run_state.json) are not
    run or logged again: `--resume` on a finished run reports it and does nothing else."""
    results = {"suite": ctx.suite.name, "run_uid": ctx.state["run_uid"], "tracking_uri": ctx.tracker.tracking_uri,
               "experiment": ctx.tracker.experiment, "tasks": {}}
    if not ctx.suite.systems:
        results["search_space"] = load_search_space(options.search_space or ctx.suite.search_space).name
    started, loaded = time.perf_counter(), {}
    done = ctx.state.setdefault("groups_done", {})
    try:
        for key, group in _plan(tasks).items():
            if key in done:
                ctx.progress(f"[{', '.join(t.name for t in group)}] finished earlier in run {ctx.state['run_uid']}: "
                             "results from run_state.json, nothing run or logged again")
                results["tasks"].update(done[key])
                continue
            if ctx.stop.requested:
                raise StopRequested(f"before {', '.join(t.name for t in group)}")
            dataset = _load_group_dataset(ctx, group[0], loaded)
            run_group = _run_cv_group if group[0].protocol.is_cv else _run_holdout_group
            entries = run_group(ctx, key, group, dataset)
            results["tasks"].update(entries)
            done[key] = entries
            ctx.save_state()
    except StopRequested as stop:
        results["tasks"].update(stop.partial)
        results["interrupted"] = {"where": stop.where, "resume": resume_command(options)}
        _write_results(ctx, results, started)
        _end_open_runs(ctx, "KILLED")
        raise Interrupted(f"interrupted ({stop.where}); what finished is in MLflow and {ctx.output / 'results.json'}; "
                          f"resume with: {resume_command(options)}") from None
    results["already_finished"] = ctx.state.get("finished") is not None and options.resume
    results["views"] = save_views(ctx.tracker, ctx.state["run_uid"], sorted({t.primary_key for t in tasks}),
                                  cv=any(t.protocol.is_cv for t in tasks))
    ctx.state.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%S"))
    ctx.save_state()
    _write_results(ctx, results, started)
    return results


def _write_results(ctx: RunContext, results: dict, started: float) -> None:
    from benchmark.cluster import fitting_trials

    results["seconds"] = round(time.perf_counter() - started, 1)
    results["compute"] = {**{k: round(v, 1) for k, v in ctx.compute.items()},
                          "workers": fitting_trials(ctx.options.cpus_per_trial, ctx.options.gpus_per_trial)}
    atomic_write_bytes(ctx.output / "results.json", json.dumps(results, indent=2, default=float).encode())
