"""JSON Schema of every YAML kind the suite reads, generated from its pydantic models.

Shipped with the package in `benchmark/bundled/schemas/` (editors validate YAML with them, e.g. VS Code's YAML
extension through a `# yaml-language-server: $schema=...` line) and written anew by
`python -m benchmark schema --out FOLDER`; a test keeps the shipped files equal to the models.

| kind | file | model |
|---|---|---|
| task | `tasks/<name>.yaml`, one task per file | `TaskSpec` |
| dataset | the `dataset:` block of a task | `DatasetSpec` |
| systems | `tasks/systems.yaml`: system name -> system | `SystemSpec` (its name is the key) |
| suites | `tasks/suites.yaml`: suite name -> suite | `SuiteSpec` (its name is the key) |
| search-space | `search_spaces/<name>.yaml` | `SearchSpace` |
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from benchmark.bundled import bundled_dir
from benchmark.tasks.specs import DatasetSpec, SuiteSpec, SystemSpec, TaskSpec
from benchmark.tuning.space import SearchSpace

#: kind -> (model, a mapping of names to models (True) or one model per file (False))
KINDS: dict[str, tuple[type[BaseModel], bool]] = {
    "task": (TaskSpec, False),
    "dataset": (DatasetSpec, False),
    "systems": (SystemSpec, True),
    "suites": (SuiteSpec, True),
    "search-space": (SearchSpace, False),
}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(kind: str) -> dict:
    """The JSON Schema of one YAML kind (a mapping file's entries carry no `name`: it is their key)."""
    model, mapping = KINDS[kind]
    schema = model.model_json_schema()
    if "protocol" in schema.get("properties", {}):  # ProtocolSpec also takes its kind alone: `protocol: holdout`
        given = schema["properties"]["protocol"]
        names = {"type": "string", "enum": ["holdout", "repeated_cv"]}
        schema["properties"]["protocol"] = {"anyOf": [names, given], "description": given.get("description", "")}
    title = schema.get("title", model.__name__)
    if mapping:
        schema["properties"].pop("name", None)
        schema["required"] = [r for r in schema.get("required", []) if r != "name"]
        defs = schema.pop("$defs", None)
        entry = {k: v for k, v in schema.items() if k != "title"}
        schema = {
            "title": f"{kind}.yaml",
            "description": f"{kind}.yaml: names mapped to {title} entries (the key is the name). {model.__doc__ or ''}",
            "type": "object",
            "additionalProperties": entry,
            **({"$defs": defs} if defs else {}),
        }
    return {"$schema": SCHEMA_DIALECT, "$id": f"{kind}.schema.json", **schema}


def schema_dir() -> Path:
    return bundled_dir("schemas")


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = folder / f"{kind}.schema.json"
        path.write_text(json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
