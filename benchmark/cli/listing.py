"""`python -m benchmark list`: the registries as tables."""

from __future__ import annotations

import argparse

from benchmark.core.errors import UnknownNameError
from benchmark.data import datasets
from benchmark.data.text_fields import DEFAULT_TEMPLATES
from benchmark.encoders import encoder_registry
from benchmark.encoders.registry import broken_plugins
from benchmark.splits.splitters import SPLITS
from benchmark.tasks.specs import SUITES, SYSTEMS, TASKS, load_registry
from benchmark.tuning.space import available_search_spaces, load_search_space

LIST_KINDS = (
    "datasets",
    "tasks",
    "suites",
    "systems",
    "search-spaces",
    "encoders",
    "splits",
    "text-fields",
    "heads",
    "losses",
)

NAME = "list"
HELP = "show registered encoders, splits, text fields, heads, loss terms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", default="all", help=f"one of {', '.join(LIST_KINDS)} (default: all)")


def execute(args: argparse.Namespace) -> int:
    kind = args.kind
    if kind != "all" and kind not in LIST_KINDS:
        raise UnknownNameError("list kind", kind, LIST_KINDS)
    show = LIST_KINDS if kind == "all" else (kind,)
    if "datasets" in show:
        print("datasets:")
        for name in datasets.DATASETS.names():
            dataset = datasets.load(name, allow_download=False)
            print(datasets.format_card(datasets.card(name, dataset)))
    if "tasks" in show or "suites" in show or "systems" in show:
        load_registry()
    if "tasks" in show:
        print("tasks:")
        width = max(map(len, TASKS.names()), default=0) + 2
        for name in TASKS.names():
            task = TASKS.get(name)
            leak = "  LEAKY" if task.leaky else ""
            p = task.protocol
            protocol = f"cv {p.folds}x{p.repeats}" if p.is_cv else "holdout"
            print(f"  {name:<{width}}{task.split.name:<10}{task.retrieval:<9}{protocol:<10}{task.primary_key}{leak}")
    if "suites" in show:
        print("suites:")
        for name in SUITES.names():
            suite = SUITES.get(name)
            how = (
                f"systems {', '.join(suite.systems)}"
                if suite.systems
                else f"{suite.num_samples} trials/split, space {suite.search_space}"
            )
            print(f"  {name:<24}{how}: {', '.join(suite.tasks)}")
    if "systems" in show:
        print("systems:")
        for name in SYSTEMS.names():
            system = SYSTEMS.get(name)
            budget = f"{system.num_samples} trials/fold" if system.num_samples > 1 else "fixed"
            print(f"  {name:<24}{system.search_space:<16}{budget:<16}{system.description}")
    if "search-spaces" in show:
        print("search spaces:")
        for name in available_search_spaces():
            space = load_search_space(name)
            names = list(space.parameters) + [f"[{t}]" for t in space.terms]
            print(f"  {name:<24}{', '.join(names) or '(fixed configuration)'}")
    if "encoders" in show:
        reg = encoder_registry()
        print("encoders:")
        for name in reg.names():
            entry = reg.get(name)
            origin = reg.origin(name)
            print(
                f"  {name:<22}{entry.modality:<10}{entry.description}"
                + ("" if origin == "benchmark" else f"  [{origin}]")
            )
        for name, why in broken_plugins().items():
            print(f"  {name:<22}{'?':<10}not available: {why}")
    if "splits" in show:
        print("splits:")
        for name in SPLITS.names():
            print(f"  {name:<22}{SPLITS.get(name).description}")
    if "text-fields" in show:
        print("text fields:")
        for name, template in DEFAULT_TEMPLATES.items():
            print(f"  {name:<22}{' '.join(template)}")
    if "heads" in show:
        print(
            "heads:\n  linear                dual linear heads (paper)\n  mlp                   two-layer MLP heads\n"
            "  memory_bank           pseudo-tokens + shared learnable-query cross-attention (Song et al.)"
        )
    if "losses" in show:
        print(
            "loss terms (weights / switches):\n  infonce               symmetric InfoNCE, --temperature, --margin, "
            "--hard-negative-beta, --same-target-weight\n  u2u                   second-order "
            "KL(TT||MM)+KL(MM||TT), --u2u-weight\n"
            "  u2c                   second-order KL(TT||MT)+KL(MM||TM), --u2c-weight"
        )
    return 0
