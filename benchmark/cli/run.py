"""`python -m benchmark run`: a suite, with options from flags over the suite's defaults."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError

from benchmark.core.errors import ConfigError
from benchmark.run.interrupts import INTERRUPTED_EXIT, Interrupted
from benchmark.run.options import RUN_FLAGS, RunOptions, resume_command
from benchmark.run.result_schema import RESULTS_FILE
from benchmark.run.suite import run_suite
from benchmark.run.summary import format_summary
from benchmark.tuning.progress import make_progress


def run_options(args):
    """RunOptions from the parsed flags; a value out of range is an error naming its flag."""

    values = {name: getattr(args, flag.lstrip("-").replace("-", "_")) for name, flag in RUN_FLAGS.items()}
    values = {name: value for name, value in values.items() if value is not None}  # unset: RunOptions' default
    try:
        return RunOptions(**values, allow_download=not args.offline)
    except ValidationError as exc:
        problems = "; ".join(
            f"{RUN_FLAGS.get(str(e['loc'][0]), e['loc'][0])} {e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid option: {problems}") from None


def cmd_run(args) -> int:
    options = run_options(args)
    progress = make_progress()
    try:
        results = run_suite(options, progress=progress)
    except Interrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            f"\ninterrupted again: stopped at once; the state saved last is intact; resume with: "
            f"{resume_command(options)}",
            file=sys.stderr,
        )
        return INTERRUPTED_EXIT
    finally:
        progress.close()
    print()
    if results.get("already_finished"):
        print(
            f"run {results['run_uid']} in {Path(args.output).resolve()} had already finished: nothing was run or "
            "logged again (start a new run without --resume to repeat it)"
        )
    print(format_summary(results))
    print(
        f"\nresults: {Path(args.output).resolve() / RESULTS_FILE}; MLflow: {results['tracking_uri']} "
        f"(experiment {results['experiment']}); browse with: mlflow ui --backend-store-uri {results['tracking_uri']}"
    )
    for name, route in results.get("views", {}).items():
        print(f"  saved view {name}: http://127.0.0.1:5000/{route}")
    return 0
