"""`results.json`, declared: the typed shape of a run's results file, its version, one builder, one reader.

A reader of an old file can tell what it holds from `schema_version`; `read_results` refuses a
version it does not know with a message naming the file and the versions it reads. Every key the
run writes is declared here (the schema forbids undeclared keys, and a test validates a real run's
file against it), so a change of shape is a change of this module and of `SCHEMA_VERSION`.

Version history:
- 1: the first declared version (the shape of the files written before, plus `schema_version`).
- 2: a tuned repeated-CV system says how it searched (`systems.<name>.search`: configurations per fold,
  successive halving, trials stopped early, fANOVA importance per parameter over the folds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

from benchmark.core.errors import BenchmarkError
from benchmark.core.io import atomic_write_bytes
from benchmark.core.settings import validation_details

SCHEMA_VERSION = 2
#: versions `read_results` understands (2 only adds an optional key to version 1)
READABLE_VERSIONS = (1, 2)
RESULTS_FILE = "results.json"

_STRICT = ConfigDict(extra="forbid")


@with_config(_STRICT)
class MetricValue(TypedDict):
    """One metric on the test side: the estimate, its 95% bootstrap CI and its n (queries; groups if grouped)."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    n_groups: NotRequired[int]
    note: NotRequired[str]  # why ci_low / ci_high are NaN: too few groups for an interval


@with_config(_STRICT)
class TrialCounts(TypedDict):
    """How a study's trials ended (`StudyOutcome.as_dict`)."""

    finished: int
    failed: int
    interrupted: int
    planned: int
    stopped_by: NotRequired[str]
    retried: NotRequired[int]  # failed attempts tried again (a killed worker, a lost node)


@with_config(_STRICT)
class ChosenTrial(TypedDict):
    """The trial a holdout task selected on validation."""

    trial_id: str
    val_value: float
    short: str
    config: dict[str, Any]


@with_config(_STRICT)
class FinalResult(TypedDict):
    """A holdout task's final: the chosen configuration retrained with the final seeds and tested once."""

    dataset: dict[str, Any]
    split: dict[str, Any]
    config: dict[str, Any]
    config_digest: str
    encoders: dict[str, Any]
    seeds: list[int]
    timing: dict[str, float]
    metrics: dict[str, dict[str, MetricValue]]
    baseline: dict[str, dict[str, MetricValue]]
    comparisons: dict[str, dict[str, Any]]
    seed_values: dict[str, dict[str, list[float]]]


@with_config(_STRICT)
class HoldoutTaskEntry(TypedDict):
    """A holdout task: its trials, the chosen configuration and its final, or the error that stopped it."""

    description: str
    primary_metric: str
    leaky: bool
    trials: TrialCounts
    chosen: NotRequired[ChosenTrial]
    final: NotRequired[FinalResult]
    error: NotRequired[str]


@with_config(_STRICT)
class FoldSummary(TypedDict):
    """A system's metric over the folds: mean, 95% CI and the number of folds."""

    mean: float
    ci_low: float
    ci_high: float
    n_folds: int


@with_config(_STRICT)
class ChosenInFold(TypedDict):
    """A tuned system's configuration chosen in one fold, with its inner-validation score."""

    config: str
    digest: str
    val: float
    selected_by: str


@with_config(_STRICT)
class SearchSummary(TypedDict):
    """How a tuned system searched inside the folds, and which of its parameters mattered (fANOVA, over folds)."""

    configurations_per_fold: int
    successive_halving: bool
    halving_factor: NotRequired[int]  # the best 1 / factor of a rung goes on (absent before it was a setting)
    trials: int
    retried: NotRequired[int]  # failed attempts tried again (a killed worker, a lost node)
    stopped_early: int
    importance: dict[str, FoldSummary]


@with_config(_STRICT)
class SystemEntry(TypedDict):
    """One system of a repeated-CV task."""

    description: str
    search_space: str
    tuned: bool
    budget_per_fold: int
    summary: dict[str, FoldSummary]
    per_fold: dict[str, dict[str, float]]
    chosen: dict[str, ChosenInFold]
    search: NotRequired[SearchSummary]


@with_config(_STRICT)
class CVTaskEntry(TypedDict):
    """A repeated-CV task: its folds, every system's values, and the comparison per metric
    (`Comparison.as_dict`: test, reason, omnibus, checks, systems, pairs, letters)."""

    description: str
    protocol: dict[str, Any]
    primary_metric: str
    leaky: bool
    dataset: dict[str, Any]
    folds: dict[str, Any]
    systems: dict[str, SystemEntry]
    failed_fits: list[dict[str, Any]]
    comparison: dict[str, dict[str, Any]]
    seconds: dict[str, float]


@with_config(_STRICT)
class InterruptedAt(TypedDict):
    where: str
    resume: str


@with_config(_STRICT)
class Compute(TypedDict):
    """Bare compute of the run (seconds inside trials, fits and data preparation) and the parallel workers."""

    trial_seconds: float
    fit_seconds: float
    prepare_seconds: float
    workers: int


@with_config(_STRICT)
class RunResults(TypedDict):
    """The whole file."""

    schema_version: int
    suite: str
    run_uid: str
    tracking_uri: str
    experiment: str
    tasks: dict[str, HoldoutTaskEntry | CVTaskEntry]
    search_space: NotRequired[str]
    interrupted: NotRequired[InterruptedAt]
    already_finished: NotRequired[bool]
    views: NotRequired[dict[str, str]]
    seconds: NotRequired[float]
    compute: NotRequired[Compute]


_ADAPTER = TypeAdapter(RunResults)


def new_results(suite: str, run_uid: str, tracking_uri: str, experiment: str) -> RunResults:
    """The one builder of a run's results: the header; stages add their task entries under `tasks`."""
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": suite,
        "run_uid": run_uid,
        "tracking_uri": tracking_uri,
        "experiment": experiment,
        "tasks": {},
    }


def check_results(results: dict, where: str = RESULTS_FILE) -> RunResults:
    """`results` validated against the declared shape; an undeclared key or a wrong type names its path."""
    try:
        return _ADAPTER.validate_python(results)
    except ValidationError as exc:
        raise BenchmarkError(
            f"{where} does not match results schema {SCHEMA_VERSION}: {validation_details(exc)}"
        ) from None


def write_results(path: Path, results: RunResults) -> None:
    atomic_write_bytes(path, json.dumps(results, indent=2, default=float).encode())


def read_results(path: str | Path) -> RunResults:
    """A results file, refused with one clear message when it is not JSON or of a version this code cannot read."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchmarkError(f"{path} does not exist; run `python -m benchmark run` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path} is not a results file (not JSON: {exc}); run the suite again") from None
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path} is not a results file (top level is {type(data).__name__}, not an object)")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        found = (
            "no schema_version (written before results were versioned)" if version is None else f"version {version!r}"
        )
        raise BenchmarkError(
            f"{path} has {found}; this version of the benchmark reads results schema "
            f"{', '.join(map(str, READABLE_VERSIONS))}: rerun the suite with it, or read the file with the version "
            "that wrote it"
        )
    return data  # type: ignore[return-value]
