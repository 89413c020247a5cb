"""What the stages of one run share: its options, tracker, state file, output lock and stop signal."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from benchmark.cluster.ray_cluster import is_uri
from benchmark.core.errors import BenchmarkError, ConfigError
from benchmark.core.io import atomic_write_bytes
from benchmark.core.names import (
    HOLDOUT,
    STAGE_TASK,
    TAG_LEAKY,
    TAG_NOTE,
    TAG_PRIMARY,
    TAG_PROTOCOL,
    TAG_RUN_UID,
    TAG_STAGE,
    TAG_TASK,
    TAG_TEXT_FIELD,
)
from benchmark.core.version import __version__
from benchmark.encoders.cache import EmbeddingCache
from benchmark.model.config import flatten
from benchmark.run.interrupts import StopSignal
from benchmark.run.options import RunOptions
from benchmark.tasks.specs import SuiteSpec, TaskSpec
from benchmark.tracking.store import (
    Tracker,
    git_commit,
)
from benchmark.tuning.search import StudySettings

log = logging.getLogger(__name__)


STATE_FILE = "run_state.json"


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

    run_id = tracker.start_run(
        task.name,
        {
            TAG_RUN_UID: state["run_uid"],
            TAG_STAGE: STAGE_TASK,
            TAG_TASK: task.name,
            "suite": suite.name,
            "split": task.split.name,
            TAG_LEAKY: task.leaky,
            "retrieval": task.retrieval,
            TAG_PROTOCOL: HOLDOUT,
            TAG_PRIMARY: task.primary_key,
            "dataset_fingerprint": dataset.fingerprint,
            TAG_TEXT_FIELD: task.dataset.text_field,
            "dataset": dataset_name(task),
            "package_version": __version__,
            "git_commit": git_commit(),
            TAG_NOTE: task.description,
            **tags,
        },
    )
    params = {f"task.{k}": v for k, v in flatten(task.model_dump()).items()}
    tracker.log(run_id, params=params)
    tracker.log_dataset(run_id, dataset, dataset_name(task))
    return run_id


def dataset_name(task: TaskSpec) -> str:
    """What the MLflow Dataset column shows: the registered name, or the file's name."""
    return task.dataset.name if task.dataset.source == "default" else Path(task.dataset.path).name


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
    atomic_write_bytes(
        holder,
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": " ".join(sys.argv),
            }
        ).encode(),
    )
    return lock


def tune_storage(options: RunOptions, output: Path) -> str:
    """Where Ray Tune keeps experiment state: --storage (a shared folder or a URI), else OUTPUT/ray."""
    if options.storage:
        return options.storage if is_uri(options.storage) else str(Path(options.storage).resolve())
    return str(output / "ray")


def _study_settings(ctx: RunContext, name: str, space, num_samples: int, asha: bool):
    options, suite = ctx.options, ctx.suite
    max_epochs = max(space.trial_config({}).optim.epochs, 1)
    return StudySettings(
        name=name,
        storage_path=tune_storage(options, ctx.output),
        num_samples=num_samples,
        time_budget_s=options.time_budget_s or suite.time_budget_s,
        max_concurrent=options.max_concurrent or suite.max_concurrent,
        cpus_per_trial=options.cpus_per_trial,
        gpus_per_trial=options.gpus_per_trial,
        asha=asha,
        max_reports=-(-max_epochs // suite.eval_every),
        seed=options.seed,
        optuna_storage=f"sqlite:///{ctx.output / 'optuna.db'}",
        max_failures=options.max_failures,
    )
