"""`python -m benchmark list`: the registries as aligned tables (rich), or as JSON for scripts (`--json`).

Each kind is one function returning rows (plain dicts, the same for both outputs), so a script reading
`list --json` sees exactly the columns a person sees in the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from benchmark.cli.options import add_folder_options
from benchmark.core.errors import UnknownNameError, WriteFailed
from benchmark.core.io import atomic_write_bytes, cache_dir, sha256_bytes
from benchmark.core.version import __version__
from benchmark.data import datasets
from benchmark.data.loaders import load_dataset
from benchmark.data.text_fields import DEFAULT_TEMPLATES
from benchmark.encoders import encoder_registry
from benchmark.encoders.registry import broken_plugins, build_encoder
from benchmark.splits.splitters import SPLITS
from benchmark.tasks.specs import SUITES, SYSTEMS, TASKS, load_registry
from benchmark.tuning.space import available_search_spaces, load_search_space

NAME = "list"
HELP = "show registered datasets, tasks, suites, systems, encoders, splits, text fields, heads, loss terms"

HEADS = {
    "linear": "dual linear heads (paper)",
    "mlp": "two-layer MLP heads",
    "memory_bank": "pseudo-tokens + shared learnable-query cross-attention (Song et al.)",
}
LOSS_TERMS = {
    "infonce": ("symmetric InfoNCE", "--temperature, --margin, --hard-negative-beta, --same-target-weight"),
    "u2u": ("second-order KL(TT||MM)+KL(MM||TT)", "--u2u-weight"),
    "u2c": ("second-order KL(TT||MT)+KL(MM||TM)", "--u2c-weight"),
}
Row = dict[str, object]
log = logging.getLogger(__name__)


def texts_cut(dataset, encoder, field: str = "text_rich") -> int | None:
    """How many of the dataset's texts (default text field) `encoder` cuts; None when it cannot say."""
    texts, _ = dataset.text_index(field)
    try:
        return sum(encoder.truncated(list(texts)))
    except Exception as exc:  # the card is still worth showing without this count
        log.warning("could not count the texts %s cuts: %s", encoder.name, exc)
        return None


#: bump when a dataset row gains, loses or recomputes a column: rows cached by an older version are then ignored
DATASET_ROW_VERSION = 1


def dataset_rows() -> list[Row]:
    """One row per registered dataset. Its counts take RDKit over every molecule and the default text encoder's
    tokenizer over every text (about 10 s for both datasets), so each row is kept in the cache folder under the
    digest of the file it was read from, and recomputed only when that file (or this row's definition) changes."""
    rows = []
    minilm = None  # the default text encoder, loaded only when a row must be computed
    for name in datasets.DATASETS.names():
        source = datasets.resolve_path(name, allow_download=False)
        digest = sha256_bytes(f"{DATASET_ROW_VERSION}|{__version__}|{name}|".encode() + source.read_bytes())
        kept = cache_dir() / "dataset-rows" / f"{name}-{digest[:16]}.json"
        if kept.exists():
            with contextlib.suppress(OSError, ValueError):
                rows.append(json.loads(kept.read_text()))
                continue
        dataset = load_dataset(source)
        c = datasets.card(name, dataset)
        counts = c["counts"]
        minilm = minilm or build_encoder("minilm")
        row = {
            "name": name,
            "pairs": counts["pairs"],
            "molecules": counts["molecules"],
            "targets": counts["targets"],
            "ecfp4 collisions": c["fingerprint_collisions"]["ecfp4"],
            "chiral collisions": c["fingerprint_collisions"]["ecfp4-chiral"],
            "texts cut by minilm": texts_cut(dataset, minilm),
            "release": c["release"],
            "description": c["description"],
        }
        with contextlib.suppress(WriteFailed):  # a read-only cache costs the next `list` time, nothing else
            atomic_write_bytes(kept, json.dumps(row).encode())
        rows.append(row)
    return rows


def task_rows() -> list[Row]:
    load_registry()
    rows = []
    for name in TASKS.names():
        task = TASKS.get(name)
        p = task.protocol
        rows.append(
            {
                "name": name,
                "split": task.split.name,
                "retrieval": task.retrieval,
                "protocol": f"cv {p.folds}x{p.repeats}" if p.is_cv else "holdout",
                "primary": task.primary_key,
                "leaky": bool(task.leaky),
            }
        )
    return rows


def suite_rows() -> list[Row]:
    load_registry()
    rows = []
    for name in SUITES.names():
        suite = SUITES.get(name)
        how = ", ".join(suite.systems) if suite.systems else f"{suite.num_samples} trials/split, {suite.search_space}"
        rows.append({"name": name, "systems": how, "tasks": ", ".join(suite.tasks)})
    return rows


def system_rows() -> list[Row]:
    load_registry()
    rows = []
    for name in SYSTEMS.names():
        system = SYSTEMS.get(name)
        budget = f"{system.num_samples} trials/fold" if system.num_samples > 1 else "fixed"
        rows.append(
            {"name": name, "search_space": system.search_space, "budget": budget, "description": system.description}
        )
    return rows


def search_space_rows() -> list[Row]:
    rows = []
    for name in available_search_spaces():
        space = load_search_space(name)
        names = list(space.parameters) + [f"[{t}]" for t in space.terms]
        rows.append({"name": name, "parameters": ", ".join(names) or "(fixed configuration)"})
    return rows


def encoder_rows() -> list[Row]:
    reg = encoder_registry()
    rows: list[Row] = [
        {
            "name": name,
            "modality": reg.get(name).modality,
            "origin": reg.origin(name),
            "description": reg.get(name).description,
        }
        for name in reg.names()
    ]
    rows += [
        {"name": name, "modality": "?", "origin": "plugin", "description": f"not available: {why}"}
        for name, why in broken_plugins().items()
    ]
    return rows


def split_rows() -> list[Row]:
    return [{"name": name, "description": SPLITS.get(name).description} for name in SPLITS.names()]


def text_field_rows() -> list[Row]:
    return [{"name": name, "template": " ".join(template)} for name, template in DEFAULT_TEMPLATES.items()]


def head_rows() -> list[Row]:
    return [{"name": name, "description": text} for name, text in HEADS.items()]


def loss_rows() -> list[Row]:
    return [{"name": name, "description": text, "options": opts} for name, (text, opts) in LOSS_TERMS.items()]


KINDS: dict[str, Callable[[], list[Row]]] = {
    "datasets": dataset_rows,
    "tasks": task_rows,
    "suites": suite_rows,
    "systems": system_rows,
    "search-spaces": search_space_rows,
    "encoders": encoder_rows,
    "splits": split_rows,
    "text-fields": text_field_rows,
    "heads": head_rows,
    "losses": loss_rows,
}
LIST_KINDS = tuple(KINDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", default="all", help=f"one of {', '.join(LIST_KINDS)} (default: all)")
    parser.add_argument(
        "--json", action="store_true", help="print {kind: [row, ...]} as JSON (for scripts) instead of tables"
    )
    add_folder_options(parser)


def table(kind: str, rows: list[Row]) -> Table:
    """One registry as a rich table: a column per key, in the rows' order."""
    out = Table(title=kind, title_justify="left", show_lines=False, expand=False)
    columns = list(rows[0]) if rows else ["name"]
    for column in columns:
        out.add_column(column.replace("_", " "), overflow="fold", no_wrap=column == "name")
    for row in rows:
        out.add_row(*(_cell(row[c]) for c in columns))
    return out


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "LEAKY" if value else ""
    return str(value)


def execute(args: argparse.Namespace) -> int:
    kind = args.kind
    if kind != "all" and kind not in KINDS:
        raise UnknownNameError("list kind", kind, LIST_KINDS)
    show = LIST_KINDS if kind == "all" else (kind,)
    rows = {name: KINDS[name]() for name in show}
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console = Console(width=max(Console().width, 160), soft_wrap=False)
    for name in show:
        console.print(table(name, rows[name]))
    return 0
