"""`python -m benchmark VERB`: parse, dispatch to the verb's module, turn errors into one line."""

from __future__ import annotations

import logging
import sys
import traceback

from pydantic import ValidationError

from benchmark.cli.download import cmd_download
from benchmark.cli.listing import cmd_list
from benchmark.cli.parser import build_parser
from benchmark.cli.report import cmd_report
from benchmark.cli.run import cmd_run
from benchmark.cli.train import cmd_train
from benchmark.core.errors import BenchmarkError
from benchmark.perf.main import SECTIONS, run_perf


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "configuration"
        parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("sentence_transformers", "transformers", "httpx", "urllib3", "filelock", "matplotlib", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "list":
            return cmd_list(args.kind)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "perf":
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
            )
            return 0
        if args.command == "report":
            return cmd_report(args)
        if args.command == "download-chembl":
            return cmd_download(args)
    except (BenchmarkError, ValidationError) as exc:
        if args.debug:
            traceback.print_exc()
        message = _format_validation(exc) if isinstance(exc, ValidationError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2
