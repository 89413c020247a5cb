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

import logging
import time
from collections.abc import Callable
from pathlib import Path

from benchmark.cluster.ray_cluster import check_resources, check_storage_shared, fitting_trials, init_ray, is_uri
from benchmark.core.errors import TrackingLost, WriteFailed
from benchmark.core.io import check_sqlite_file, disk_full, free_space
from benchmark.core.names import (
    STAGE_FINAL,
    STAGE_FIT,
    STAGE_TRIAL,
    TAG_RUN_UID,
    TAG_STAGE,
)
from benchmark.data import datasets
from benchmark.data.cleaning import PairDataset
from benchmark.data.loaders import load_dataset
from benchmark.encoders.cache import EmbeddingCache
from benchmark.run import cv
from benchmark.run.context import OPTUNA_FILE, STATE_FILE, RunContext, RunSettings, RunState, lock_output, read_state
from benchmark.run.cv_jobs import System, load_systems
from benchmark.run.holdout import _run_holdout_group
from benchmark.run.interrupts import Interrupted, StopRequested, StopSignal
from benchmark.run.options import RunOptions, resume_command
from benchmark.run.preflight import (
    Locations,
    check_before_start,
    check_flags_apply,
    new_locations,
    resumed_locations,
)
from benchmark.run.result_schema import RESULTS_FILE, CVTaskEntry, RunResults, new_results, write_results
from benchmark.tasks.specs import TaskSpec, get_suite, get_system, get_task
from benchmark.tracking.store import Tracker, check_reachable, tracking_lost
from benchmark.tracking.views import save_views
from benchmark.tuning.callback import say
from benchmark.tuning.search import StudySettings
from benchmark.tuning.space import check_space_encoders, load_search_space
from benchmark.tuning.state import verify_storage

log = logging.getLogger(__name__)


def _start(options: RunOptions, progress: Callable[[str], None]) -> tuple[RunContext, list[TaskSpec]]:
    """Stage: validate everything (suite, search spaces, output, tracking store, cluster, trial sizes) before a file
    is created or Ray starts; then lock the output folder, open the tracking store and the run state, start Ray."""
    suite = get_suite(options.suite)
    tasks = [get_task(name) for name in suite.tasks]
    check_flags_apply(options, suite)
    # every search space the run will use is read now: a bad one fails before any store, run or Ray starts
    names = [get_system(n).search_space for n in suite.systems] or [options.search_space or suite.search_space]
    for name in names:
        check_space_encoders(load_search_space(name))
    output = Path(options.output).resolve()
    check_before_start(options, output)
    if options.resume and (output / STATE_FILE).exists():
        recorded = read_state(output / STATE_FILE, output).get("locations")
        locations = resumed_locations(options, output, recorded)
        options = options.model_copy(update={"tracking_uri": locations.tracking_uri, "storage": locations.storage})
        verify_storage(RunSettings(options, suite, output).tune_storage)  # before anything is read or started
    else:
        locations = new_locations(options)
    cache = (EmbeddingCache(options.cache_dir) if options.cache_dir else EmbeddingCache()).check_writable()
    check_reachable(locations.tracking_uri)
    output.mkdir(parents=True, exist_ok=True)
    lock = lock_output(output)
    try:
        if locations.note:
            progress(locations.note)
        settings = RunSettings(options, suite, output)
        return _open(settings, progress, locations, lock, cache), tasks
    except BaseException:
        lock.release()
        raise


def _open(
    settings: RunSettings, progress: Callable[[str], None], locations: Locations, lock, cache: EmbeddingCache
) -> RunContext:
    """Stage: the run state, the tracking store (runs a killed driver cut off are cleared), Ray and its checks."""
    options, suite = settings.options, settings.suite
    # Ray first: a cluster too small for a trial, or blind to the storage, is refused before the run's state or
    # its tracking store is written
    init_ray(options.address)
    check_resources(options.cpus_per_trial, options.gpus_per_trial)
    check_storage_shared(settings.tune_storage, flag="--storage" if options.storage else "--output or --storage")
    state = RunState.open(settings.output, options)
    state["locations"] = locations.record(settings.output)  # where this run writes (a moved folder: from now on)
    state.save()
    if options.resume:
        check_sqlite_file(
            settings.output / OPTUNA_FILE,
            "the Optuna studies",
            "the search history cannot be resumed from it: start again without --resume (or with another --output)",
        )
    tracker = Tracker(
        locations.tracking_uri, f"benchmark-{suite.name}", description=f"Suite {suite.name}: {suite.description}"
    )
    tracker.experiment_id  # noqa: B018 - fail now, not after training, if the store is unusable
    if options.resume:  # a driver killed outright (SIGKILL, a lost head) leaves its last writes RUNNING
        cut = sum(
            tracker.delete_open_runs(**{TAG_RUN_UID: state.run_uid, TAG_STAGE: stage})
            for stage in (STAGE_TRIAL, STAGE_FINAL, STAGE_FIT)
        )
        if cut:
            progress(
                f"resume: {cut} MLflow run(s) cut off when the previous driver was killed are deleted "
                "and logged again whole"
            )
    return RunContext(settings, tracker, state, cache, progress, lock=lock)


def _plan(tasks: list[TaskSpec]) -> dict[str, list[TaskSpec]]:
    """Stage: tasks with equal split keys (dataset, split, protocol) share folds, trials and fits."""
    groups: dict[str, list[TaskSpec]] = {}
    for task in tasks:
        groups.setdefault(task.split_key(), []).append(task)
    return groups


def _run_cv_group(ctx: RunContext, key: str, group: list[TaskSpec], dataset) -> dict[str, CVTaskEntry]:
    settings = ctx.settings
    systems = load_systems([get_system(name) for name in settings.suite.systems])

    def study_for(system: System) -> StudySettings:
        # successive halving runs per fold (tuning.search.PerFoldHalving): trials meet only their own fold's
        halving = system.spec.successive_halving if settings.options.asha is None else settings.options.asha
        return settings.study(
            f"{settings.suite.name}-{group[0].split.name}-cv-{system.name}-{key}",
            system.space,
            settings.options.num_samples or system.spec.num_samples,
            asha=halving and system.tuned,
            halving_factor=system.spec.halving_factor,
        )

    return cv.run_group(ctx, group, dataset, systems, study_for)


def _load_group_dataset(options: RunOptions, task: TaskSpec, loaded: dict) -> PairDataset:
    """Stage: the group's dataset (each registered dataset loaded once per run)."""

    spec = task.dataset
    if spec.source == "file":
        return load_dataset(Path(spec.path), split_column=spec.split_column, max_heavy_atoms=spec.max_heavy_atoms)
    key = (spec.name, spec.max_heavy_atoms)
    if key not in loaded:
        loaded[key] = datasets.load(
            spec.name,
            data=options.data,
            allow_download=options.allow_download,
            max_heavy_atoms=spec.max_heavy_atoms,
        )
    return loaded[key]


def run_suite(options: RunOptions, progress: Callable[[str], None] | None = None) -> RunResults:
    """Run a suite. A first Ctrl-C ends it with `Interrupted` (results so far written, the --resume command in
    the message); a failure ends every MLflow run it left open as FAILED."""

    stop = StopSignal()
    with stop.installed():
        ctx, tasks = _start(options, progress or say)
        ctx.stop = stop
        stop.reclaim()  # ray.init() replaced the SIGTERM handler
        try:
            return _run_groups(ctx, tasks, options)
        except WriteFailed as exc:  # results or state could not be saved: say so, and how to continue
            _end_open_runs(ctx, "KILLED")  # as after a Ctrl-C: the resume continues these runs
            raise WriteFailed(
                f"{exc}; the state saved last is intact; then resume with: {resume_command(options)}"
            ) from exc
        except (Exception, StopRequested) as exc:
            full = disk_full(exc)
            if full:  # a store on a full disk (Optuna's, MLflow's sqlite): stop as for a failed save
                _end_open_runs(ctx, "KILLED")
                raise WriteFailed(
                    f"{full}; {_free_where(ctx)}; the state saved last is intact; free space, then resume with: "
                    f"{resume_command(options)}"
                ) from exc
            lost = tracking_lost(exc, ctx.tracker.tracking_uri)
            if lost:  # nothing to mark: the server is gone; MLflow's runs stay RUNNING until the resume ends them
                raise TrackingLost(
                    f"{lost}; what was logged before is kept and the run's state is saved: restart the server, then "
                    f"resume with: {resume_command(options)}"
                ) from exc
            _end_open_runs(ctx, "FAILED")
            raise
        except KeyboardInterrupt:  # a second Ctrl-C: mark the open runs and go (a resume reopens them)
            _end_open_runs(ctx, "KILLED")
            raise
        finally:
            ctx.lock.release()


def _free_where(ctx: RunContext) -> str:
    """'free: 0.0 GB in /out (the run folder: Optuna, Tune state), 41.2 GB beside the MLflow store ...'."""
    places = [(ctx.settings.output, "the run folder: its state, Optuna's studies")]
    if not is_uri(ctx.settings.tune_storage) and not ctx.settings.tune_storage.startswith(str(ctx.settings.output)):
        places.append((Path(ctx.settings.tune_storage), "Ray Tune's storage"))
    uri = ctx.tracker.tracking_uri
    if uri.startswith("sqlite:///"):
        places.append((Path(uri[len("sqlite:///") :]).parent, "the MLflow store"))
    return "free: " + ", ".join(f"{free_space(Path(path))} in {path} ({what})" for path, what in places)


def _end_open_runs(ctx: RunContext, status: str) -> None:
    """No run of this run_uid stays RUNNING in MLflow after the run stops (a resume reopens the parents)."""
    try:
        for run_id in ctx.tracker.open_runs(**{TAG_RUN_UID: ctx.state.run_uid}):
            ctx.tracker.end(run_id, status)
    except Exception as exc:  # the store itself may be why the run failed
        log.warning("could not mark the open MLflow runs %s: %s", status, exc)


def _run_groups(ctx: RunContext, tasks: list[TaskSpec], options: RunOptions) -> RunResults:
    """Stages per task group, then results.json. Groups finished earlier in this run (run_state.json) are not
    run or logged again: `--resume` on a finished run reports it and does nothing else."""
    suite = ctx.settings.suite
    results = new_results(suite.name, ctx.state.run_uid, ctx.tracker.tracking_uri, ctx.tracker.experiment)
    if not suite.systems:
        results["search_space"] = load_search_space(options.search_space or suite.search_space).name
    started, loaded = time.perf_counter(), {}
    done = ctx.state.setdefault("groups_done", {})
    try:
        for key, group in _plan(tasks).items():
            if key in done:
                ctx.progress(
                    f"[{', '.join(t.name for t in group)}] finished earlier in run {ctx.state.run_uid}: "
                    "results from run_state.json, nothing run or logged again"
                )
                results["tasks"].update(done[key])
                continue
            if ctx.stop.requested:
                raise StopRequested(f"before {', '.join(t.name for t in group)}")
            dataset = _load_group_dataset(options, group[0], loaded)
            run_group = _run_cv_group if group[0].protocol.is_cv else _run_holdout_group
            entries = run_group(ctx, key, group, dataset)
            results["tasks"].update(entries)
            done[key] = entries
            ctx.state.save()
    except StopRequested as stop:
        if ctx.stop.failure:  # a state save failed: nothing more is written to that disk
            storage = ctx.settings.tune_storage
            raise WriteFailed(
                f"{ctx.stop.failure} (Ray Tune's storage: {storage}, {free_space(Path(storage))} free)"
            ) from None
        results["tasks"].update(stop.partial)
        results["interrupted"] = {"where": stop.where, "resume": resume_command(options)}
        _write_results(ctx, results, started)
        _end_open_runs(ctx, "KILLED")
        raise Interrupted(
            f"interrupted ({stop.where}); what finished is in MLflow and {ctx.settings.output / RESULTS_FILE}; "
            f"resume with: {resume_command(options)}",
            ctx.stop.signum,
        ) from None
    results["already_finished"] = ctx.state.get("finished") is not None and options.resume
    results["views"] = save_views(ctx.tracker, cv=any(t.protocol.is_cv for t in tasks))
    ctx.state.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%S"))
    ctx.state.save()
    _write_results(ctx, results, started)
    return results


def _write_results(ctx: RunContext, results: RunResults, started: float) -> None:
    results["seconds"] = round(time.perf_counter() - started, 1)
    resources = ctx.settings.resources
    results["compute"] = {**ctx.compute.as_dict(), "workers": fitting_trials(resources.cpus, resources.gpus)}
    write_results(ctx.settings.output / RESULTS_FILE, results)
