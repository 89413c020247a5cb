"""The command line: every verb's flags, declared once."""

from __future__ import annotations

import argparse
import json

from benchmark.core.errors import ConfigError
from benchmark.data.loaders import ColumnMap

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


def _parse_params(pairs: list[str] | None, flag: str) -> dict:
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


def _add_data_options(p: argparse.ArgumentParser) -> None:
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


def _columns(args):
    if not (args.smiles_column or args.text_column):
        if args.id_column or args.group_column:
            raise ConfigError("--id-column/--group-column need --smiles-column and --text-column too")
        return None
    if not (args.smiles_column and args.text_column):
        raise ConfigError("bring-your-own data needs both --smiles-column and --text-column")
    return ColumnMap(smiles=args.smiles_column, text=args.text_column, id=args.id_column, group=args.group_column)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description="Drug-text alignment benchmark suite")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="show registered encoders, splits, text fields, heads, loss terms")
    p_list.add_argument("kind", nargs="?", default="all", help=f"one of {', '.join(LIST_KINDS)} (default: all)")

    p_train = sub.add_parser("train", help="train and evaluate one bridge configuration")
    p_train.add_argument(
        "--dataset", help="a registered dataset: approved (default) | clinical (python -m benchmark list datasets)"
    )
    _add_data_options(p_train)
    g = p_train.add_argument_group("split")
    g.add_argument(
        "--split",
        default=None,
        help="random (default) | scaffold | pair (leaky) | prospective | published (with --split-column)",
    )
    g.add_argument("--split-seed", type=int, default=0)
    g.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    g.add_argument(
        "--eval-split",
        choices=("val", "test"),
        default="test",
        help="side to evaluate (choose hyper-parameters on val; test once per final configuration)",
    )
    g = p_train.add_argument_group("encoders")
    g.add_argument("--mol-encoder", default="ecfp4")
    g.add_argument("--mol-encoder-param", action="append", metavar="KEY=VALUE")
    g.add_argument("--text-encoder", default="minilm")
    g.add_argument("--text-encoder-param", action="append", metavar="KEY=VALUE")
    g.add_argument(
        "--text-field",
        default=None,
        help="text_rich (default; text_rich_no_drug for the prospective "
        "split) | mechanism | text_rich_no_drug | custom",
    )
    g = p_train.add_argument_group("bridge and loss")
    g.add_argument("--head", default="linear", help="linear | mlp | memory_bank")
    g.add_argument("--dim", type=int, default=256)
    g.add_argument("--temperature", type=float, default=0.07)
    g.add_argument("--margin", type=float, default=0.0)
    g.add_argument("--hard-negative-beta", type=float, default=0.0, help="weight negatives by exp(beta * similarity)")
    g.add_argument("--same-target-weight", type=float, default=1.0, help="extra weight of same-target negatives")
    g.add_argument("--infonce-weight", type=float, default=1.0)
    g.add_argument("--u2u-weight", type=float, default=0.0, help="second-order uni-to-uni KL loss weight")
    g.add_argument("--u2c-weight", type=float, default=0.0, help="second-order uni-to-cross KL loss weight")
    g = p_train.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--batch-size", type=int, default=512)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g = p_train.add_argument_group("evaluation and output")
    g.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs")
    g.add_argument("--cache-dir", help="embedding cache (default: $BENCHMARK_CACHE or ~/.cache/drug-text-benchmark)")
    g.add_argument("--output", help="write the result JSON here (per-query ranks go beside it as .queries.parquet)")
    g.add_argument("--quiet", action="store_true", help="only warnings and the result table")

    p_run = sub.add_parser("run", help="tune, select on validation, test once: every task of a suite, logged to MLflow")
    p_run.add_argument("--suite", default="default", help="default | quick | paper (python -m benchmark list suites)")
    p_run.add_argument(
        "--data",
        help="pairs file; default: $BENCHMARK_DATA, else a ChEMBL download where reachable, else the shared snapshot",
    )
    p_run.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db in the working directory)"
    )
    p_run.add_argument(
        "--output", default="results", help="folder for results.json, Ray Tune state and the Optuna study"
    )
    p_run.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    p_run.add_argument("--address", help="join an existing Ray cluster (or set RAY_ADDRESS)")
    p_run.add_argument("--cpus-per-trial", type=float, default=1.0)
    p_run.add_argument(
        "--gpus-per-trial", type=float, default=0.0, help="fractional GPUs, e.g. 0.25 puts four trials on a GPU"
    )
    p_run.add_argument("--num-samples", type=int, help="trials per split (default: the suite's)")
    p_run.add_argument(
        "--time-budget",
        type=float,
        help="seconds of search per study: no trial starts after it, running trials finish; reported as such",
    )
    p_run.add_argument("--max-concurrent", type=int, help="cap on concurrent trials")
    p_run.add_argument("--search-space", help="a name in search_spaces/ or a YAML path (default: the suite's)")
    p_run.add_argument("--asha", action=argparse.BooleanOptionalAction, default=None, help="ASHA early stopping")
    p_run.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    p_run.add_argument("--cache-dir", help="embedding cache")
    p_run.add_argument("--offline", action="store_true", help="never try the ChEMBL download")
    p_run.add_argument(
        "--max-failures",
        type=int,
        help="retries of a failed trial (a lost node, a killed worker) before it counts as failed "
        "(default 2; a trial whose own code raised is not trained again)",
    )
    p_run.add_argument(
        "--storage",
        help="Ray Tune's storage (default: OUTPUT/ray); on a cluster with nodes on other "
        "hosts a folder mounted on every node, or a URI such as s3://bucket/path",
    )

    p_rep = sub.add_parser("report", help="leaderboards and plots from the MLflow runs of `run`")
    p_rep.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db in the working directory)"
    )
    p_rep.add_argument(
        "--experiment", action="append", help="experiment name (repeatable; default: every benchmark-* experiment)"
    )
    p_rep.add_argument("--out", default="reports", help="output folder (default: reports/)")
    p_rep.add_argument(
        "--practical-difference",
        type=float,
        default=None,
        help="repeated CV: smallest mean difference that matters in practice; smaller ones are drawn "
        "as no difference in the heatmap (default 0.02)",
    )

    p_perf = sub.add_parser(
        "perf",
        help="measure speed (trial, Tune overhead, cache, encoding, evaluation, bootstrap, "
        "scaling, a whole suite) against the straightforward implementations; writes reports/perf.md",
    )
    p_perf.add_argument("--data")
    p_perf.add_argument("--repeats", type=int, default=3)
    p_perf.add_argument("--epochs", type=int, default=100)
    p_perf.add_argument("--device", default="cpu", help="cpu (GPU rows are added when CUDA is present) or cuda")
    p_perf.add_argument(
        "--sections",
        help="comma-separated subset (default: all) of trial, tune, cache, encoding, "
        "evaluation, bootstrap, scaling, suite",
    )
    p_perf.add_argument("--tune-trials", type=int, default=16)
    p_perf.add_argument("--max-pairs", type=int, default=100_000, help="largest evaluation / scaling size")
    p_perf.add_argument(
        "--compare-pairs", type=int, default=10_000, help="size at which evaluation is compared with the reference"
    )
    p_perf.add_argument("--out", default="reports/perf.md")
    p_perf.add_argument("--suite", default="default", help="the suite the 'suite' section runs (default: default)")

    p_dl = sub.add_parser(
        "download-chembl", help="download a dataset (drugs and mechanisms) from the ChEMBL web services"
    )
    p_dl.add_argument("--dataset", default="approved", help="approved (max_phase 4) | clinical (max_phase >= 1)")
    p_dl.add_argument("--out", help="folder for the parquet (default: the cache directory)")
    p_dl.add_argument("--force", action="store_true", help="download again even if cached")
    return parser
