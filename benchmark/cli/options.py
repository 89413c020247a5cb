"""Flags and parsing helpers that several verbs share (data options, KEY=VALUE parameters, columns)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from benchmark.core.errors import ConfigError
from benchmark.data.loaders import ColumnMap
from benchmark.tasks.specs import TASKS_ENV
from benchmark.tuning.space import SPACES_ENV


def add_folder_options(p: argparse.ArgumentParser) -> None:
    """`--tasks-dir` / `--search-spaces-dir`: the user's folders, added to the bundled ones (as the environment
    variables BENCHMARK_TASKS_DIR / BENCHMARK_SEARCH_SPACES_DIR do; both may name several)."""
    p.add_argument(
        "--tasks-dir", action="append", default=[], metavar="FOLDER",
        help="a folder of task YAML, systems.yaml and suites.yaml added to the bundled ones (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--search-spaces-dir", action="append", default=[], metavar="FOLDER",
        help="a folder of search-space YAML added to the bundled ones (repeatable)",
    )  # fmt: skip


@contextlib.contextmanager
def user_folders(args) -> Iterator[None]:
    """The folders of `--tasks-dir` / `--search-spaces-dir` joined to their environment variables for one command
    (and the variables put back after it)."""
    saved = {env: os.environ.get(env) for env in (TASKS_ENV, SPACES_ENV)}
    try:
        for env, given in (
            (TASKS_ENV, getattr(args, "tasks_dir", [])),
            (SPACES_ENV, getattr(args, "search_spaces_dir", [])),
        ):
            if given:
                parts = [saved[env]] if saved[env] else []
                os.environ[env] = os.pathsep.join(parts + [str(Path(g).resolve()) for g in given])
        yield
    finally:
        for env, value in saved.items():
            if value is None:
                os.environ.pop(env, None)
            else:
                os.environ[env] = value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (refused at parsing, before anything is trained)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_params(pairs: list[str] | None, flag: str) -> dict:
    params = {}
    for item in pairs or []:
        if "=" not in item:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        help="pairs file (ChEMBL schema or bring-your-own CSV/TSV/parquet); "
        "default: $BENCHMARK_DATA, else the shared ChEMBL snapshot",
    )
    g.add_argument("--smiles-column", help="bring-your-own: column with SMILES")
    g.add_argument("--text-column", help="bring-your-own: column with the text")
    g.add_argument("--id-column", help="bring-your-own: column with molecule ids (optional)")
    g.add_argument("--group-column", help="bring-your-own: column with targets/groups for grouped retrieval (optional)")
    g.add_argument(
        "--split-column",
        help="bring-your-own: column with a published split (train / val / test per row); runs exactly that split",
    )
    g.add_argument(
        "--max-heavy-atoms",
        type=int,
        help="drop (and count) structures with more heavy atoms, before "
        "RDKit sees them (default 1000; approved drugs have at most 476)",
    )
    g.add_argument(
        "--text-template",
        help="template of a custom text field 'custom', segments separated by '|', "
        "e.g. '{mechanism}.|Target: {target_name}.' (use with --text-field custom)",
    )


def column_map(args):
    if not (args.smiles_column or args.text_column):
        if args.id_column or args.group_column:
            raise ConfigError("--id-column/--group-column need --smiles-column and --text-column too")
        return None
    if not (args.smiles_column and args.text_column):
        raise ConfigError("bring-your-own data needs both --smiles-column and --text-column")
    return ColumnMap(smiles=args.smiles_column, text=args.text_column, id=args.id_column, group=args.group_column)
