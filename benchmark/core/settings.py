"""Typed settings: the strict, frozen base of every configuration model, and YAML read and validated once.

Tasks, systems, suites, search spaces, trial configurations and run options are all pydantic models
that refuse unknown fields and cannot change after validation; a YAML file that is broken, not a
mapping, or invalid gets one `ConfigError` naming the file and the fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """A settings model: unknown fields are errors, values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping (`safe_load` only)."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: broken YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def validation_details(exc: ValidationError) -> str:
    """'field.path: message; ...' for every error pydantic found."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}" for e in exc.errors())


def validate(model: type[M], data: dict, where: str, what: str | None = None) -> M:
    """`model` validated from `data`; a failure names `where` (a file, 'python') and every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: invalid {what or model.__name__}: {validation_details(exc)}") from exc
