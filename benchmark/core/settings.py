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


def validation_details(exc: ValidationError, line_of=None) -> str:
    """'field.path: message; ...' for every error pydantic found ('field.path (line 7): ...' with `line_of`)."""
    parts = []
    for e in exc.errors():
        line = line_of(e["loc"]) if line_of else None
        key = ".".join(str(p) for p in e["loc"]) or "top level"
        parts.append(f"{key}{f' (line {line})' if line else ''}: {e['msg']}")
    return "; ".join(parts)


def yaml_line(path: Path, keys: tuple) -> int | None:
    """The 1-based line of the deepest of `keys` found in the YAML file at `path` (None when unreadable)."""
    try:
        node = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if str(k.value) == str(key)), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def validate(
    model: type[M], data: dict, where: str, what: str | None = None, *, source: Path | None = None, prefix: tuple = ()
) -> M:
    """`model` validated from `data`; a failure names `where` (a file, 'python') and every bad field, with its line
    in `source` (the YAML file, where the data sits under the keys `prefix`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        line_of = (lambda loc: yaml_line(source, (*prefix, *loc))) if source is not None else None
        raise ConfigError(f"{where}: invalid {what or model.__name__}: {validation_details(exc, line_of)}") from exc
