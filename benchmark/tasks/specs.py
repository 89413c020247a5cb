"""Benchmark tasks and suites: metadata first, validated (pydantic), registered by name.

A task fixes what is measured: the dataset, the split (kind, fractions, seed), the retrieval
mode (global or grouped within target), the directions, the primary metric used for selection
and ranking, the bootstrap settings and the seeds of the final runs. Tasks live as YAML files
in `tasks/` (one per task) and can also be registered from Python. Suites (`tasks/suites.yaml`)
name groups of tasks with a search space and a budget.

The protocol of a task says how its numbers are made: `holdout` (one split, final seeds, the
paper's protocol) or `repeated_cv` (k folds x r repeats grouped by the split's unit, the Ash et al.
protocol). A repeated-CV suite compares named *systems* (`tasks/systems.yaml`) on the same
folds: a system is a search space with a budget; a space without parameters is a fixed
configuration, one with parameters is tuned inside each fold's training portion.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from benchmark.bundled import bundled_dir, user_dirs
from benchmark.core.errors import ConfigError
from benchmark.core.names import HOLDOUT, REPEATED_CV
from benchmark.core.registry import Registry
from benchmark.core.settings import Strict, read_yaml_mapping, validate
from benchmark.data.datasets import DATASETS
from benchmark.splits.splitters import SPLITS, check_fractions

TASKS_ENV = "BENCHMARK_TASKS_DIR"
DIRECTIONS = ("text_to_molecule", "molecule_to_text")
METRICS = ("recall@1", "recall@5", "recall@10", "mrr")
GROUPED_METRICS = ("recall@1", "mrr")


class DatasetSpec(Strict):
    """`default`: the registered dataset `name` (benchmark.datasets: a ChEMBL download where reachable or cached,
    else its snapshot; --data / $BENCHMARK_DATA replace the default dataset `approved`). `file`: a pairs file at
    `path`, optionally with a published split in `split_column`."""

    source: Literal["default", "file"] = "default"
    name: str = "approved"
    path: str | None = None
    split_column: str | None = None
    text_field: str = "text_rich"
    #: structures above this many heavy atoms are dropped (counted) before RDKit sees them; default 1000
    max_heavy_atoms: int | None = Field(None, ge=1)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        DATASETS.get(name)
        return name

    @model_validator(mode="after")
    def _file_needs_path(self):
        if self.source == "file" and not self.path:
            raise ValueError("dataset.source 'file' needs dataset.path")
        if self.split_column and self.source != "file":
            raise ValueError("dataset.split_column goes with source 'file' (a bring-your-own file)")
        return self


class SplitSpec(Strict):
    name: str = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _known_split(cls, name: str) -> str:
        SPLITS.get(name)
        return name

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, fractions):
        return check_fractions(fractions)


class ProtocolSpec(Strict):
    """`holdout`, or `{kind: repeated_cv, folds: 5, repeats: 5}` (inner validation carved per fold)."""

    kind: Literal["holdout", "repeated_cv"] = HOLDOUT
    folds: int = Field(5, ge=2, le=20)
    repeats: int = Field(5, ge=1, le=50)
    inner_val_fraction: float = Field(0.125, gt=0, lt=0.5)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data):
        return {"kind": data} if isinstance(data, str) else data

    @property
    def is_cv(self) -> bool:
        return self.kind == REPEATED_CV


class BootstrapSpec(Strict):
    n_boot: int = Field(1000, ge=10)
    seed: int = 0


class TaskSpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str
    dataset: DatasetSpec = DatasetSpec()
    split: SplitSpec = SplitSpec()
    protocol: ProtocolSpec = ProtocolSpec()
    retrieval: Literal["global", "grouped"] = "global"
    directions: tuple[Literal["text_to_molecule", "molecule_to_text"], ...] = DIRECTIONS
    primary_direction: Literal["text_to_molecule", "molecule_to_text"] = "text_to_molecule"
    primary_metric: str = "recall@1"
    bootstrap: BootstrapSpec = BootstrapSpec()
    final_seeds: tuple[int, ...] = (0, 1, 2)

    @model_validator(mode="after")
    def _consistent(self):
        allowed = GROUPED_METRICS if self.retrieval == "grouped" else METRICS
        if self.primary_metric not in allowed:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not one of {allowed} for {self.retrieval} retrieval"
            )
        if self.primary_direction not in self.directions:
            raise ValueError(f"primary_direction {self.primary_direction!r} is not among directions {self.directions}")
        if not self.final_seeds:
            raise ValueError("final_seeds needs at least one seed")
        if self.protocol.is_cv and SPLITS.get(self.split.name).leaky:
            raise ValueError(
                f"protocol repeated_cv needs a non-leaky split (random or scaffold), not {self.split.name!r}"
            )
        return self

    @property
    def leaky(self) -> bool:
        return SPLITS.get(self.split.name).leaky

    def mode(self, direction: str | None = None) -> str:
        direction = direction or self.primary_direction
        return direction + ("_grouped" if self.retrieval == "grouped" else "")

    @property
    def primary_key(self) -> str:
        """e.g. 'text_to_molecule_grouped/recall@1'."""
        return f"{self.mode()}/{self.primary_metric}"

    def split_key(self) -> str:
        """Tasks with equal split keys share trials (train once, evaluate every mode)."""
        payload = {"dataset": self.dataset.model_dump(), "split": self.split.model_dump()}
        if self.protocol.is_cv:  # holdout keys stay as they were (resumable runs of older versions)
            payload["protocol"] = self.protocol.model_dump()
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


class SystemSpec(Strict):
    """A named system to compare: a search space and a per-fold budget (fixed when the space has no parameters)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str
    search_space: str
    num_samples: int = Field(1, ge=1)
    #: successive halving inside each fold (ASHA over validation reports): weak configurations stop at a rung
    successive_halving: bool = False
    #: successive halving keeps the best 1 / halving_factor of a rung (rungs at 1, f, f^2, ... validation reports)
    halving_factor: int = Field(2, ge=2)


class SuiteSpec(Strict):
    name: str
    description: str
    tasks: tuple[str, ...]
    systems: tuple[str, ...] = ()  # repeated-CV suites: the systems compared on every fold
    search_space: str = "default"
    num_samples: int = Field(8, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    max_concurrent: int | None = Field(None, ge=1)
    asha: bool = False
    eval_every: int = Field(10, ge=1)


TASKS: Registry[TaskSpec] = Registry("task")
SYSTEMS: Registry[SystemSpec] = Registry("system")
SUITES: Registry[SuiteSpec] = Registry("suite")
_loaded_from: list[Path] = []


def tasks_dir() -> Path:
    """The bundled task folder (the user's folders in $BENCHMARK_TASKS_DIR add to it: `task_dirs`)."""
    folder = bundled_dir("tasks")
    if not folder.is_dir():
        raise ConfigError(f"the bundled task folder {str(folder)!r} is missing; reinstall the package (it ships them)")
    return folder


def task_dirs() -> list[Path]:
    """The bundled task folder, then each folder of $BENCHMARK_TASKS_DIR (or `--tasks-dir`): theirs add to it."""
    folders = [tasks_dir(), *user_dirs(TASKS_ENV)]
    for folder in folders[1:]:
        if not folder.is_dir():
            raise ConfigError(f"task folder {str(folder)!r} ({TASKS_ENV} or --tasks-dir) is not a folder")
    return folders


def register_task(task: TaskSpec | dict, *, origin: str = "python", source: Path | None = None) -> TaskSpec:
    task = task if isinstance(task, TaskSpec) else validate(TaskSpec, task, origin, source=source)
    return TASKS.register(task.name, task, origin=origin)


def load_registry(folder: str | os.PathLike | None = None) -> None:
    """Read every task YAML, systems.yaml and suites.yaml of `folder` (default: the bundled folder and the user's)
    once; a name that two files define is an error naming both."""
    if folder is None:
        for each in task_dirs():
            load_registry(each)
        return
    folder = Path(folder)
    if folder.resolve() in _loaded_from:
        return
    for path in sorted(folder.glob("*.yaml")):
        if path.name in ("suites.yaml", "systems.yaml"):
            continue
        data = read_yaml_mapping(path)
        register_task(data, origin=str(path), source=path)
    systems_file = folder / "systems.yaml"
    if systems_file.exists():
        for name, body in read_yaml_mapping(systems_file).items():
            if not isinstance(body, dict):
                raise ConfigError(f"{systems_file}: system {name!r} must be a mapping")
            SYSTEMS.register(
                name,
                validate(
                    SystemSpec,
                    {"name": name, **body},
                    f"{systems_file} (system {name!r})",
                    source=systems_file,
                    prefix=(name,),
                ),  # fmt: skip
                origin=str(systems_file),
            )
    suites_file = folder / "suites.yaml"
    if suites_file.exists():
        for name, body in read_yaml_mapping(suites_file).items():
            if not isinstance(body, dict):
                raise ConfigError(f"{suites_file}: suite {name!r} must be a mapping")
            suite = validate(
                SuiteSpec, {"name": name, **body}, f"{suites_file} (suite {name!r})", source=suites_file, prefix=(name,)
            )
            _check_suite(suite, suites_file)
            SUITES.register(name, suite, origin=str(suites_file))
    _loaded_from.append(folder.resolve())


@contextlib.contextmanager
def scoped_registry() -> Iterator[None]:
    """Tasks, systems and suites loaded inside the block (and the folders read) are forgotten after it."""
    loaded = list(_loaded_from)
    with TASKS.scoped(), SYSTEMS.scoped(), SUITES.scoped():
        try:
            yield
        finally:
            _loaded_from[:] = loaded


def _check_suite(suite: SuiteSpec, where: Path) -> None:
    tasks = [TASKS.get(t) for t in suite.tasks]  # unknown names fail with suggestions
    for system in suite.systems:
        SYSTEMS.get(system)
    kinds = {t.protocol.is_cv for t in tasks}
    if len(kinds) > 1:
        raise ConfigError(f"{where}: suite {suite.name!r} mixes holdout and repeated_cv tasks; make one suite of each")
    if kinds == {True} and len(suite.systems) < 2:
        raise ConfigError(
            f"{where}: suite {suite.name!r} has repeated_cv tasks and needs at least two 'systems' "
            "to compare (see tasks/systems.yaml)"
        )
    if kinds == {False} and suite.systems:
        raise ConfigError(
            f"{where}: suite {suite.name!r}: 'systems' are compared under repeated_cv; its tasks are "
            "holdout (they use the suite's search_space)"
        )


def get_system(name: str) -> SystemSpec:
    load_registry()
    return SYSTEMS.get(name)


def get_task(name: str) -> TaskSpec:
    load_registry()
    return TASKS.get(name)


def get_suite(name: str) -> SuiteSpec:
    load_registry()
    return SUITES.get(name)
