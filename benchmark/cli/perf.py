"""`python -m benchmark perf`: speed and memory against the straightforward implementations (reports/perf.md)."""

from __future__ import annotations

import argparse

from benchmark.perf.main import SECTIONS, run_perf

NAME = "perf"
HELP = (
    "measure speed (trial, Tune overhead, cache, encoding, evaluation, bootstrap, "
    "scaling, a whole suite) against the straightforward implementations; writes reports/perf.md"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="cpu (GPU rows are added when CUDA is present) or cuda")
    parser.add_argument(
        "--sections",
        help=f"comma-separated subset (default: all) of {', '.join(SECTIONS)}",
    )
    parser.add_argument("--tune-trials", type=int, default=16)
    parser.add_argument("--max-pairs", type=int, default=100_000, help="largest evaluation / scaling size")
    parser.add_argument(
        "--compare-pairs", type=int, default=10_000, help="size at which evaluation is compared with the reference"
    )
    parser.add_argument("--out", default="reports/perf.md")
    parser.add_argument("--suite", default="default", help="the suite the 'suite' section runs (default: default)")
    parser.add_argument(
        "--cores",
        type=int,
        help="torch threads and the Tune section's Ray CPUs (default: the cores this process may use, as taskset "
        "or a container allows)",
    )


def execute(args: argparse.Namespace) -> int:
    sections = tuple(x.strip() for x in args.sections.split(",") if x.strip()) if args.sections else SECTIONS
    run_perf(
        data=args.data,
        repeats=args.repeats,
        epochs=args.epochs,
        out=args.out,
        device=args.device,
        sections=sections,
        tune_trials=args.tune_trials,
        max_pairs=args.max_pairs,
        compare_pairs=args.compare_pairs,
        suite=args.suite,
        cores=args.cores,
    )
    return 0
