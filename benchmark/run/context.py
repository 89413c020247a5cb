"""One run's settings and state: frozen settings resolved once (`RunSettings`), the state file (`RunState`), the
compute ledger, the output lock, and the live handles the stage coordinators hold (`RunContext`)."""

from __future__ import annotations

import dataclasses
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
    TAG_RETRIEVAL,
    TAG_RUN_UID,
    TAG_SPLIT,
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
from benchmark.tuning.space import SearchSpace

log = logging.getLogger(__name__)


STATE_FILE = "run_state.json"
OPTUNA_FILE = "optuna.db"


class RunState(dict):
    """`run_state.json`: the run's id and what it has finished (groups, finals, fold checksums), saved atomically
    after each stage so that `--resume` neither repeats nor loses work."""

    def __init__(self, path: Path, data: dict):
        super().__init__(data)
        self.path = path

    @property
    def run_uid(self) -> str:
        return self["run_uid"]

    def save(self) -> None:
        atomic_write_bytes(self.path, json.dumps(self, indent=2, default=float).encode())

    @classmethod
    def open(cls, output: Path, options: RunOptions) -> RunState:
        """The state to continue (`--resume`), or a new run's, written at once."""
        path = output / STATE_FILE
        if options.resume:
            if not path.exists():
                raise BenchmarkError(f"nothing to resume in {output}: no {STATE_FILE}; run without --resume first")
            state = cls(path, read_state(path, output))
            if state["suite"] != options.suite:
                raise ConfigError(f"{output} holds a run of suite {state['suite']!r}, not {options.suite!r}")
            return state
        if path.exists():
            log.info("starting a new run in %s (the previous state is replaced; use --resume to continue it)", output)
        state = cls(
            path,
            {"run_uid": uuid.uuid4().hex[:12], "suite": options.suite, "started": time.strftime("%Y-%m-%dT%H:%M:%S")},
        )
        state.save()
        return state


def read_state(path: Path, output: Path) -> dict:
    """run_state.json, checked before it is trusted: a file that is empty, cut short or without its run id is
    named, with what to do, instead of a traceback (or a resume that starts from nothing)."""
    fix = (
        f"the run in {output} cannot be resumed from it; start again without --resume (or with another --output), "
        "what MLflow holds stays"
    )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path} is damaged (empty or cut short: {exc}); {fix}") from None
    missing = [key for key in ("run_uid", "suite") if not isinstance(data, dict) or not data.get(key)]
    if missing:
        raise BenchmarkError(f"{path} is damaged (no {', '.join(missing)}); {fix}")
    return data


@dataclass(frozen=True)
class TrialResources:
    """What each trial and each fit may use, and how often a lost one is retried."""

    cpus: float
    gpus: float
    max_failures: int

    @property
    def threads(self) -> int:
        """torch threads inside a trial or fit: its CPU share."""
        return int(max(1, self.cpus))


@dataclass(frozen=True)
class RunSettings:
    """What one run was asked to do: the CLI's options over the suite's YAML, resolved once and frozen."""

    options: RunOptions
    suite: SuiteSpec
    output: Path

    @property
    def resources(self) -> TrialResources:
        o = self.options
        return TrialResources(o.cpus_per_trial, o.gpus_per_trial, o.max_failures)

    @property
    def tune_storage(self) -> str:
        """Where Ray Tune keeps experiment state: --storage (a shared folder or a URI), else OUTPUT/ray."""
        storage = self.options.storage
        if storage:
            return storage if is_uri(storage) else str(Path(storage).resolve())
        return str(self.output / "ray")

    def study(
        self, name: str, space: SearchSpace, num_samples: int, asha: bool, halving_factor: int = 2
    ) -> StudySettings:
        """One Tune study's settings: the run's options over the suite's defaults."""
        options, suite = self.options, self.suite
        max_epochs = max(space.trial_config({}).optim.epochs, 1)
        return StudySettings(
            name=name,
            storage_path=self.tune_storage,
            num_samples=num_samples,
            time_budget_s=options.time_budget_s or suite.time_budget_s,
            max_concurrent=options.max_concurrent or suite.max_concurrent,
            cpus_per_trial=options.cpus_per_trial,
            gpus_per_trial=options.gpus_per_trial,
            asha=asha,
            halving_factor=halving_factor,
            max_reports=-(-max_epochs // suite.eval_every),
            seed=options.seed,
            optuna_storage=f"sqlite:///{self.output / OPTUNA_FILE}",
            max_failures=options.max_failures,
        )


@dataclass
class ComputeLedger:
    """Bare compute of the run, for the orchestration overhead in `perf`: seconds inside trials (Tune's
    time_total_s), inside fits (train + test), and preparing data."""

    trial_seconds: float = 0.0
    fit_seconds: float = 0.0
    prepare_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in dataclasses.asdict(self).items()}


def _parent_run(tracker: Tracker, task: TaskSpec, run_uid: str, suite: SuiteSpec, dataset, tags: dict) -> str:
    """The task's parent run (found again on --resume)."""
    existing = tracker.find_run(**{TAG_RUN_UID: run_uid, TAG_TASK: task.name, TAG_STAGE: STAGE_TASK})
    if existing:
        return existing

    run_id = tracker.start_run(
        task.name,
        {
            TAG_RUN_UID: run_uid,
            TAG_STAGE: STAGE_TASK,
            TAG_TASK: task.name,
            "suite": suite.name,
            TAG_SPLIT: task.split.name,
            TAG_LEAKY: task.leaky,
            TAG_RETRIEVAL: task.retrieval,
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
    """The live handles of one run, held by the stage coordinators (`run_suite`, a holdout group, a CV group);
    the stages they call take only what they use, named in their signatures."""

    settings: RunSettings
    tracker: Tracker
    state: RunState
    cache: EmbeddingCache
    progress: Callable[[str], None]
    compute: ComputeLedger = field(default_factory=ComputeLedger)
    lock: object = None  # the output folder's lock, held for the whole run
    stop: StopSignal = field(default_factory=StopSignal)

    def parent_run(self, task: TaskSpec, dataset, tags: dict) -> str:
        return _parent_run(self.tracker, task, self.state.run_uid, self.settings.suite, dataset, tags)


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
