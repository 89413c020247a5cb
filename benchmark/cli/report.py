"""`python -m benchmark report`: leaderboards and figures from MLflow."""

from __future__ import annotations

import argparse

from benchmark.core.errors import ConfigError
from benchmark.report.generate import generate_report
from benchmark.tracking.store import default_tracking_uri

NAME = "report"
HELP = "leaderboards and plots from the MLflow runs of `run`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db in the working directory)"
    )
    parser.add_argument(
        "--experiment", action="append", help="experiment name (repeatable; default: every benchmark-* experiment)"
    )
    parser.add_argument("--out", default="reports", help="output folder (default: reports/)")
    parser.add_argument(
        "--practical-difference",
        type=float,
        default=None,
        help="repeated CV: smallest mean difference that matters in practice; smaller ones are drawn "
        "as no difference in the heatmap (default 0.02)",
    )


def execute(args) -> int:
    if args.practical_difference is not None and not 0 <= args.practical_difference < 1:
        raise ConfigError(f"--practical-difference must lie in [0, 1), got {args.practical_difference}")
    written = generate_report(
        args.tracking_uri or default_tracking_uri(),
        experiments=args.experiment,
        out=args.out,
        practical_difference=args.practical_difference,
    )
    print(f"wrote {written['markdown']} and {written['html']} with {len(written) - 2} figure(s)")
    return 0
