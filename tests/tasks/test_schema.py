"""The shipped JSON Schemas equal the models', and every bundled YAML file validates against its kind's schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from benchmark.bundled import bundled_dir
from benchmark.tasks.schema import KINDS, json_schema, schema_dir


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_shipped_schema_is_the_models(kind):
    shipped = json.loads((schema_dir() / f"{kind}.schema.json").read_text())
    assert shipped == json_schema(kind), "regenerate: python -m benchmark schema --out benchmark/bundled/schemas"


def kind_of(path) -> str:
    if path.parent.name == "search_spaces":
        return "search-space"
    return {"systems.yaml": "systems", "suites.yaml": "suites"}.get(path.name, "task")


@pytest.mark.parametrize(
    "path",
    sorted(bundled_dir("tasks").glob("*.yaml")) + sorted(bundled_dir("search_spaces").glob("*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_every_bundled_yaml_file_validates_against_its_schema(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema(kind_of(path)))


def test_a_schema_catches_what_the_model_refuses():
    task = {"name": "x", "description": "d", "retrieval": "both"}
    with pytest.raises(jsonschema.ValidationError, match="'both' is not one of"):
        jsonschema.validate(task, json_schema("task"))
    with pytest.raises(jsonschema.ValidationError, match="Additional properties are not allowed"):
        jsonschema.validate({"s": {"description": "d", "search_space": "p", "budget": 3}}, json_schema("systems"))
