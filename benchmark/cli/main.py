"""`python -m benchmark VERB`: build the parser from the verbs, dispatch, turn errors into one line.

Each verb is a module of this package with `NAME`, `HELP`, `add_arguments(parser)` and
`execute(args) -> exit status`; adding a verb is adding a module and a line to `VERBS`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from pydantic import ValidationError

from benchmark.cli import compare, download, listing, perf, report, run, schema, train
from benchmark.cli.options import user_folders
from benchmark.core.errors import BenchmarkError

#: the verbs, in the order `--help` lists them
VERBS = {verb.NAME: verb for verb in (listing, train, run, compare, report, perf, download, schema)}
NOISY_LOGGERS = ("sentence_transformers", "transformers", "httpx", "urllib3", "filelock", "matplotlib", "alembic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description="Drug-text alignment benchmark suite")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, verb in VERBS.items():
        verb.add_arguments(sub.add_parser(name, help=verb.HELP))
    return parser


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "configuration"
        parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        with user_folders(args):
            return VERBS[args.command].execute(args)
    except (BenchmarkError, ValidationError) as exc:
        if args.debug:
            traceback.print_exc()
        message = _format_validation(exc) if isinstance(exc, ValidationError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
