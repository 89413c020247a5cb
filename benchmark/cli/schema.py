"""`python -m benchmark schema`: the JSON Schema of each YAML kind (task, dataset, systems, suites, search-space)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmark.core.errors import UnknownNameError
from benchmark.tasks.schema import KINDS, json_schema, schema_dir, write_schemas

NAME = "schema"
HELP = "JSON Schema of the YAML files (task, dataset, systems, suites, search-space), for editors and checks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", default=None, help=f"one of {', '.join(KINDS)} (default: list them)")
    parser.add_argument("--out", help="write every kind's <kind>.schema.json into this folder")


def execute(args) -> int:
    if args.out:
        for path in write_schemas(Path(args.out)):
            print(path)
        return 0
    if args.kind is None:
        for kind in KINDS:
            print(f"{kind:<14}{schema_dir() / f'{kind}.schema.json'}")
        return 0
    if args.kind not in KINDS:
        raise UnknownNameError("YAML kind", args.kind, KINDS)
    print(json.dumps(json_schema(args.kind), indent=2, sort_keys=True))
    return 0
