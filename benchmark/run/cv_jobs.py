"""What repeated cross-validation fits: the systems compared, one fit job per (system, fold), the metrics
of a task group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.model.config import TrialConfig
from benchmark.splits.folds import Fold, FoldPlan
from benchmark.tasks.specs import GROUPED_METRICS, METRICS, SystemSpec, TaskSpec
from benchmark.tuning.space import SearchSpace, load_search_space


@dataclass
class System:
    spec: SystemSpec
    space: SearchSpace

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tuned(self) -> bool:
        return bool(self.space.parameters or self.space.terms)


@dataclass
class FitJob:
    system: str
    fold: Fold
    config: TrialConfig
    tasks: list[str]  # the tasks whose selection chose this configuration (all of the group for fixed systems)
    val_value: dict[str, float] = field(default_factory=dict)  # per task, tuned systems only
    selected_by: dict[str, str] = field(default_factory=dict)  # per task: the validation metric it was chosen by


def task_metrics(task: TaskSpec) -> list[str]:
    """'mode/metric' keys a task reports: its modes x the metrics of its retrieval kind."""
    metrics = GROUPED_METRICS if task.retrieval == "grouped" else METRICS
    return [f"{task.mode(d)}/{m}" for d in task.directions for m in metrics]


def load_systems(specs: list[SystemSpec]) -> list[System]:
    return [System(spec, load_search_space(spec.search_space)) for spec in specs]


def fixed_jobs(system: System, group: list[TaskSpec], folds: FoldPlan) -> list[FitJob]:
    base = system.space.trial_config({})
    return [
        FitJob(system.name, f, base.model_copy(update={"seed": f.repeat}), [t.name for t in group]) for f in folds.folds
    ]
