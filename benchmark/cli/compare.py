"""`python -m benchmark compare`: named encoders (plugins or built-in) against the built-in baselines, one command.

    python -m benchmark compare --mol-encoder maccs-desc                  # the quick protocol
    python -m benchmark compare --text-encoder my-biobert --protocol default --tuned

Like MTEB's `mteb run -m MODEL` and lm-evaluation-harness's `lm_eval --model ...`: encoders by their registered
names, a protocol by its suite name; the comparison (letters, simultaneous intervals, figures) is the suite's
own. The baselines' fits already in the store on folds with the same checksums are read back, not trained again.
"""

from __future__ import annotations

import argparse
import shlex

from benchmark.cli.run import add_common_arguments, run_and_report, run_options
from benchmark.run.compare import comparison_suite

NAME = "compare"
HELP = "named encoders against the built-in baselines on a protocol's folds (no YAML to write)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mol-encoder", action="append", default=[], metavar="NAME", help="a molecule encoder (repeatable)"
    )
    parser.add_argument(
        "--text-encoder", action="append", default=[], metavar="NAME", help="a text encoder (repeatable)"
    )
    parser.add_argument(
        "--protocol",
        default="quick",
        help="a repeated-CV suite: quick (3 folds x 2 repeats, minutes), default (5 x 5), or one of yours "
        "(python -m benchmark list suites)",
    )
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="also the protocol's tuned system, searching over the named encoders besides its own choices",
    )
    add_common_arguments(parser)


def execute(args) -> int:
    suite = comparison_suite(args.protocol, args.mol_encoder, args.text_encoder, tuned=args.tuned)
    words = ["compare", "--protocol", args.protocol]
    words += [w for name in args.mol_encoder for w in ("--mol-encoder", name)]
    words += [w for name in args.text_encoder for w in ("--text-encoder", name)]
    words += ["--tuned"] if args.tuned else []
    options = run_options(args, suite=suite, reuse_fits=True, command=shlex.join(words))
    return run_and_report(options)
