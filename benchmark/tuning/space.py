"""Search spaces as data: YAML files in `search_spaces/`, compiled to Optuna define-by-run functions.

    name: default
    base: {optim: {epochs: 100}}              # fixed values (TrialConfig fields)
    parameters:                               # always sampled; '/' separates nested fields
      loss/temperature: {type: float, low: 0.02, high: 0.2, log: true}
      mol_encoder/name: {type: categorical, choices: [ecfp4, fcfp4]}
    terms:                                    # loss terms switched on/off by the search;
      margin:                                 # a term's parameters are sampled only when on
        loss/margin: {type: float, low: 0.05, high: 0.3}

Sampled names use '/', which Ray Tune's OptunaSearch turns into nested dicts.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from benchmark.bundled import bundled_dir, user_dirs
from benchmark.core.errors import BenchmarkError, ConfigError, UnknownNameError
from benchmark.core.settings import Strict, read_yaml_mapping, validate
from benchmark.encoders.registry import check_encoder_name, encoders_of
from benchmark.model.config import TrialConfig

SPACES_ENV = "BENCHMARK_SEARCH_SPACES_DIR"
TERM_PREFIX = "terms"


class ParamSpec(Strict):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _shape(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs non-empty 'choices'")
        else:
            if self.low is None or self.high is None or self.low > self.high:
                raise ValueError(f"a {self.type} parameter needs low <= high, got low={self.low} high={self.high}")
            if self.log and self.low <= 0:
                raise ValueError("a log-scale parameter needs low > 0")
            if self.step is not None and self.step <= 0:
                raise ValueError(f"'step' must be positive, got {self.step}")
            if self.log and self.step is not None and not (self.type == "int" and self.step == 1):
                raise ValueError("Optuna cannot sample on a log scale with a step: drop 'log: true' or 'step'")
            if self.type == "int" and not (
                float(self.low).is_integer() and float(self.high).is_integer() and float(self.step or 1).is_integer()
            ):
                raise ValueError(
                    f"an int parameter needs whole low, high and step, got low={self.low} "
                    f"high={self.high} step={self.step}"
                )
        return self

    def suggest(self, trial, name: str):
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def extremes(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


def _set_path(tree: dict, path: str, value: Any) -> None:
    keys = path.split("/")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class SearchSpace(Strict):
    name: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, ParamSpec] = Field(default_factory=dict)
    terms: dict[str, dict[str, ParamSpec]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _paths_exist(self):
        # every parameter, at each end of its range, must give a valid TrialConfig
        every = {**self.parameters, **{p: s for term in self.terms.values() for p, s in term.items()}}
        for path, spec in every.items():
            if path.split("/")[0] == TERM_PREFIX:
                raise ValueError(f"parameter {path!r}: '{TERM_PREFIX}/' is reserved for loss-term switches")
            for value in spec.extremes():
                tree = copy.deepcopy(self.base)
                _set_path(tree, path, value)
                try:
                    TrialConfig.model_validate(tree)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    raise ValueError(
                        f"parameter {path!r} = {value!r} gives an invalid configuration ({where}: {first['msg']})"
                    ) from None
        try:
            TrialConfig.model_validate(self.base)
        except ValidationError as exc:
            raise ValueError(
                f"base: {exc.errors()[0]['msg']} at {'.'.join(map(str, exc.errors()[0]['loc']))}"
            ) from None
        return self

    def define_by_run(self, trial) -> None:
        """The Optuna define-by-run function: samples parameters, then switches and term parameters."""
        for path, spec in self.parameters.items():
            spec.suggest(trial, path)
        for term, params in self.terms.items():
            if trial.suggest_categorical(f"{TERM_PREFIX}/{term}", [False, True]):
                for path, spec in params.items():
                    spec.suggest(trial, path)
        return None

    def trial_config(self, sampled: dict[str, Any], **overrides: Any) -> TrialConfig:
        """A TrialConfig from nested sampled values (Tune's config) or flat '/'-named ones (Optuna params)."""
        tree: dict[str, Any] = {}
        for key, value in sampled.items():
            if isinstance(value, dict):
                tree[key] = value
            else:
                _set_path(tree, key, value)
        tree.pop(TERM_PREFIX, None)
        merged = _deep_merge(self.base, tree)
        merged = _deep_merge(merged, overrides)
        return TrialConfig.model_validate(merged)

    def encoder_choices(self) -> tuple[list[dict], list[dict]]:
        """Every molecule / text encoder spec a trial may ask for (embedded once, up front)."""
        base = TrialConfig.model_validate(self.base)
        every = {**self.parameters, **{p: s for t in self.terms.values() for p, s in t.items()}}
        out = []
        for side, default in (("mol_encoder", base.mol_encoder), ("text_encoder", base.text_encoder)):
            spec = every.get(f"{side}/name")
            names = list(spec.choices) if spec is not None else [default.name]
            out.append([{"name": n, "params": default.params if n == default.name else {}} for n in names])
        return out[0], out[1]


def check_space_encoders(space: SearchSpace) -> None:
    """Every encoder the space may ask for is registered, and of its side's modality: an unknown name fails here
    (with "did you mean"), before a store is created or Ray starts, not in the middle of a run."""
    for side, specs in zip(("molecule", "text"), space.encoder_choices(), strict=True):
        for spec in specs:
            try:
                entry = check_encoder_name(spec["name"])
            except BenchmarkError as exc:
                raise ConfigError(f"search space {space.name!r}: {exc}") from None
            if entry.modality != side:
                raise ConfigError(
                    f"search space {space.name!r}: {spec['name']!r} is a {entry.modality} encoder, named as a "
                    f"{side} encoder; {side} encoders: {', '.join(encoders_of(side))}"
                )


def spaces_dir() -> Path:
    """The bundled search-space folder (the user's in $BENCHMARK_SEARCH_SPACES_DIR add to it: `spaces_dirs`)."""
    return bundled_dir("search_spaces")


def spaces_dirs() -> list[Path]:
    return [spaces_dir(), *user_dirs(SPACES_ENV)]


def _space_files() -> dict[str, Path]:
    """Search-space name -> its file over the bundled and the user's folders; a name in two folders is an error
    naming both files."""
    found: dict[str, Path] = {}
    for folder in spaces_dirs():
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
            if path.stem in found:
                raise ConfigError(
                    f"search space {path.stem!r} is defined twice: {found[path.stem]} and {path}; rename one"
                )
            found[path.stem] = path
    return found


def available_search_spaces() -> list[str]:
    return sorted(_space_files())


#: search spaces made in Python (`compare` derives one per named encoder): found by name before any file
_REGISTERED: dict[str, SearchSpace] = {}


def register_search_space(space: SearchSpace) -> SearchSpace:
    """Make `space` loadable by its name (an equal space registered again is a no-op; a different one is an
    error naming both)."""
    known = _REGISTERED.get(space.name)
    if known is not None and known != space:
        raise ConfigError(f"search space {space.name!r} is registered twice with different contents")
    if space.name in _space_files():
        raise ConfigError(
            f"search space {space.name!r} exists as a file, {_space_files()[space.name]}; choose another name"
        )
    _REGISTERED[space.name] = space
    return space


def load_search_space(name_or_path: str | os.PathLike) -> SearchSpace:
    if str(name_or_path) in _REGISTERED:
        return _REGISTERED[str(name_or_path)]
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        files = _space_files()
        if str(name_or_path) not in files:
            raise UnknownNameError("search space", str(name_or_path), sorted(files) + sorted(_REGISTERED))
        path = files[str(name_or_path)]
    if not path.exists():
        raise ConfigError(f"search space file {str(path)!r} does not exist")
    data = read_yaml_mapping(path)
    data.setdefault("name", path.stem)
    return validate(SearchSpace, data, str(path), "search space", source=path)
