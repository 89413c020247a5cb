"""`python -m benchmark run`: a suite, with options from flags over the suite's defaults."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from benchmark.cli.options import add_folder_options
from benchmark.core.errors import ConfigError
from benchmark.run.interrupts import INTERRUPTED_EXIT, Interrupted, ignore_stop_signals
from benchmark.run.options import RUN_FLAGS, RunOptions, resume_command
from benchmark.run.result_schema import RESULTS_FILE
from benchmark.run.suite import run_suite
from benchmark.run.summary import format_summary
from benchmark.tuning.progress import make_progress

NAME = "run"
HELP = "tune, select on validation, test once: every task of a suite, logged to MLflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="default", help="default | quick | paper (python -m benchmark list suites)")
    add_common_arguments(parser)
    parser.add_argument("--num-samples", type=int, help="trials per split (default: the suite's)")
    parser.add_argument(
        "--time-budget",
        type=float,
        help="seconds of search per study: no trial starts after it, running trials finish; reported as such",
    )
    parser.add_argument("--search-space", help="a name in search_spaces/ or a YAML path (default: the suite's)")
    parser.add_argument("--asha", action=argparse.BooleanOptionalAction, default=None, help="ASHA early stopping")
    parser.add_argument(
        "--reuse-fits",
        action="store_true",
        default=None,
        help="read back a system's fits that this store already holds on folds with the same checksums (any run) "
        "instead of training it again",
    )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every verb that runs a suite (`run`, `compare`): data, stores, resume, cluster, resources."""
    add_folder_options(parser)
    parser.add_argument(
        "--data",
        help="pairs file; default: $BENCHMARK_DATA, else a ChEMBL download where reachable, else the shared snapshot",
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db in the working directory)"
    )
    parser.add_argument(
        "--output", default="results", help="folder for results.json, Ray Tune state and the Optuna study"
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    parser.add_argument("--address", help="join an existing Ray cluster (or set RAY_ADDRESS)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument(
        "--gpus-per-trial", type=float, default=0.0, help="fractional GPUs, e.g. 0.25 puts four trials on a GPU"
    )
    parser.add_argument("--max-concurrent", type=int, help="cap on concurrent trials")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    parser.add_argument("--cache-dir", help="embedding cache")
    parser.add_argument("--offline", action="store_true", help="never try the ChEMBL download")
    parser.add_argument(
        "--max-failures",
        type=int,
        help="retries of a failed trial (a lost node, a killed worker) before it counts as failed "
        "(default 2; a trial whose own code raised is not trained again)",
    )
    parser.add_argument(
        "--mlflow-ui",
        help=f"the MLflow UI's address for the printed links (default: ${UI_ENV}, an http(s) tracking server, "
        f"else {DEFAULT_UI})",
    )
    parser.add_argument(
        "--storage",
        help="Ray Tune's storage (default: OUTPUT/ray); on a cluster with nodes on other "
        "hosts a folder mounted on every node, or a URI such as s3://bucket/path",
    )


def run_options(args, **fixed):
    """RunOptions from the parsed flags (and `fixed` values a verb sets itself); a value out of range is an error
    naming its flag."""

    values = {
        name: getattr(args, flag.lstrip("-").replace("-", "_"))
        for name, flag in RUN_FLAGS.items()
        if hasattr(args, flag.lstrip("-").replace("-", "_"))  # `compare` has no --suite, --search-space, ...
    }
    values = {name: value for name, value in values.items() if value is not None}  # unset: RunOptions' default
    try:
        return RunOptions(**{**values, **fixed}, allow_download=not args.offline)
    except ValidationError as exc:
        problems = "; ".join(
            f"{RUN_FLAGS.get(str(e['loc'][0]), e['loc'][0])} {e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid option: {problems}") from None


def execute(args) -> int:
    return run_and_report(run_options(args))


#: where the user's MLflow UI answers (the saved views' links start with it): --mlflow-ui, else this variable
UI_ENV = "BENCHMARK_MLFLOW_UI"
DEFAULT_UI = "http://127.0.0.1:5000"


def ui_address(options: RunOptions) -> str:
    """The MLflow UI address the printed links use: `--mlflow-ui`, $BENCHMARK_MLFLOW_UI, an http(s) tracking
    server (which serves the UI), else `mlflow ui`'s default."""
    chosen = options.mlflow_ui or os.environ.get(UI_ENV)
    if not chosen and (options.tracking_uri or "").startswith(("http://", "https://")):
        chosen = options.tracking_uri
    return (chosen or DEFAULT_UI).rstrip("/")


def ui_command(tracking_uri: str) -> str:
    """The command that serves the UI for a store (MLflow 3's `ui` also starts GenAI job runners, several processes
    that these runs never use: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false keeps them off)."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri {tracking_uri}"


def run_and_report(options: RunOptions) -> int:
    """Run the suite of `options` with a live progress board; print the summary, or how to resume after a stop."""
    progress = make_progress()
    try:
        results = run_suite(options, progress=progress)
    except Interrupted as exc:
        ignore_stop_signals()  # stopped: a Ctrl-C more (a burst) must not break Ray's shutdown at exit (exit -2)
        print(f"\n{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        ignore_stop_signals()  # the handlers were restored on the way out: keep a third signal from Ray's shutdown
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
            f"run {results['run_uid']} in {Path(options.output).resolve()} had already finished: nothing was run or "
            "logged again (start a new run without --resume to repeat it)"
        )
    print(format_summary(results))
    print(
        f"\nresults: {Path(options.output).resolve() / RESULTS_FILE}; MLflow: {results['tracking_uri']} "
        f"(experiment {results['experiment']}); browse with: {ui_command(results['tracking_uri'])}"
    )
    ui = ui_address(options)
    for name, route in results.get("views", {}).items():
        print(f"  saved view {name}: {ui}/{route}")
    return 0
