"""Command line: a thin layer over the library (`benchmark.api`).

    python -m benchmark list [encoders|splits|text-fields|heads]
    python -m benchmark train --data PATH --split scaffold --mol-encoder ecfp4 --text-encoder minilm
    python -m benchmark download-chembl

Mistakes (bad files, unknown names, invalid values) print one clear `error:` line and exit 2;
`--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from pydantic import ValidationError

from benchmark.errors import BenchmarkError, ConfigError

LIST_KINDS = ("datasets", "tasks", "suites", "systems", "search-spaces", "encoders", "splits", "text-fields", "heads", "losses")


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
    g.add_argument("--data", help="pairs file (ChEMBL schema or bring-your-own CSV/TSV/parquet); "
                                  "default: $BENCHMARK_DATA, else the shared ChEMBL snapshot")
    g.add_argument("--smiles-column", help="bring-your-own: column with SMILES")
    g.add_argument("--text-column", help="bring-your-own: column with the text")
    g.add_argument("--id-column", help="bring-your-own: column with molecule ids (optional)")
    g.add_argument("--group-column", help="bring-your-own: column with targets/groups for grouped retrieval (optional)")
    g.add_argument("--split-column", help="bring-your-own: column with a published split (train / val / test per row); "
                                          "runs exactly that split")
    g.add_argument("--max-heavy-atoms", type=int, help="drop (and count) structures with more heavy atoms, before "
                                                      "RDKit sees them (default 1000; approved drugs have at most 476)")
    g.add_argument("--text-template", help="template of a custom text field 'custom', segments separated by '|', "
                                           "e.g. '{mechanism}.|Target: {target_name}.' (use with --text-field custom)")


def _columns(args):
    from benchmark.data.loaders import ColumnMap

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
    p_train.add_argument("--dataset", help="a registered dataset: approved (default) | clinical "
                                           "(python -m benchmark list datasets)")
    _add_data_options(p_train)
    g = p_train.add_argument_group("split")
    g.add_argument("--split", default=None, help="random (default) | scaffold | pair (leaky) | prospective | "
                                                 "published (with --split-column)")
    g.add_argument("--split-seed", type=int, default=0)
    g.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    g.add_argument("--eval-split", choices=("val", "test"), default="test",
                   help="side to evaluate (choose hyper-parameters on val; test once per final configuration)")
    g = p_train.add_argument_group("encoders")
    g.add_argument("--mol-encoder", default="ecfp4")
    g.add_argument("--mol-encoder-param", action="append", metavar="KEY=VALUE")
    g.add_argument("--text-encoder", default="minilm")
    g.add_argument("--text-encoder-param", action="append", metavar="KEY=VALUE")
    g.add_argument("--text-field", default=None, help="text_rich (default; text_rich_no_drug for the prospective "
                                                      "split) | mechanism | text_rich_no_drug | custom")
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
    p_run.add_argument("--data", help="pairs file; default: $BENCHMARK_DATA, else a ChEMBL download where reachable, "
                                      "else the shared snapshot")
    p_run.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db in the working directory)")
    p_run.add_argument("--output", default="results", help="folder for results.json, Ray Tune state and the Optuna study")
    p_run.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    p_run.add_argument("--address", help="join an existing Ray cluster (or set RAY_ADDRESS)")
    p_run.add_argument("--cpus-per-trial", type=float, default=1.0)
    p_run.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractional GPUs, e.g. 0.25 puts four trials on a GPU")
    p_run.add_argument("--num-samples", type=int, help="trials per split (default: the suite's)")
    p_run.add_argument("--time-budget", type=float, help="seconds of search per study: no trial starts after it, "
                                                          "running trials finish; reported as such")
    p_run.add_argument("--max-concurrent", type=int, help="cap on concurrent trials")
    p_run.add_argument("--search-space", help="a name in search_spaces/ or a YAML path (default: the suite's)")
    p_run.add_argument("--asha", action=argparse.BooleanOptionalAction, default=None, help="ASHA early stopping")
    p_run.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    p_run.add_argument("--cache-dir", help="embedding cache")
    p_run.add_argument("--offline", action="store_true", help="never try the ChEMBL download")
    p_run.add_argument("--max-failures", type=int,
                       help="retries of a failed trial (a lost node, a killed worker) before it counts as failed "
                            "(default 2; a trial whose own code raised is not trained again)")
    p_run.add_argument("--storage", help="Ray Tune's storage (default: OUTPUT/ray); on a cluster with nodes on other "
                                         "hosts a folder mounted on every node, or a URI such as s3://bucket/path")

    p_rep = sub.add_parser("report", help="leaderboards and plots from the MLflow runs of `run`")
    p_rep.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db in the working directory)")
    p_rep.add_argument("--experiment", action="append", help="experiment name (repeatable; default: every benchmark-* experiment)")
    p_rep.add_argument("--out", default="reports", help="output folder (default: reports/)")
    p_rep.add_argument("--practical-difference", type=float, default=None,
                       help="repeated CV: smallest mean difference that matters in practice; smaller ones are drawn "
                            "as no difference in the heatmap (default 0.02)")

    p_perf = sub.add_parser("perf", help="measure speed (trial, Tune overhead, cache, encoding, evaluation, bootstrap, "
                                         "scaling, a whole suite) against the straightforward implementations; writes reports/perf.md")
    p_perf.add_argument("--data")
    p_perf.add_argument("--repeats", type=int, default=3)
    p_perf.add_argument("--epochs", type=int, default=100)
    p_perf.add_argument("--device", default="cpu", help="cpu (GPU rows are added when CUDA is present) or cuda")
    p_perf.add_argument("--sections", help="comma-separated subset (default: all) of trial, tune, cache, encoding, "
                                           "evaluation, bootstrap, scaling, suite")
    p_perf.add_argument("--tune-trials", type=int, default=16)
    p_perf.add_argument("--max-pairs", type=int, default=100_000, help="largest evaluation / scaling size")
    p_perf.add_argument("--compare-pairs", type=int, default=10_000, help="size at which evaluation is compared with the reference")
    p_perf.add_argument("--out", default="reports/perf.md")
    p_perf.add_argument("--suite", default="default", help="the suite the 'suite' section runs (default: default)")

    p_dl = sub.add_parser("download-chembl", help="download a dataset (drugs and mechanisms) from the ChEMBL web services")
    p_dl.add_argument("--dataset", default="approved", help="approved (max_phase 4) | clinical (max_phase >= 1)")
    p_dl.add_argument("--out", help="folder for the parquet (default: the cache directory)")
    p_dl.add_argument("--force", action="store_true", help="download again even if cached")
    return parser


def cmd_list(kind: str) -> int:
    from benchmark.encoders import encoder_registry
    from benchmark.data.text_fields import DEFAULT_TEMPLATES
    from benchmark.errors import UnknownNameError
    from benchmark.splits import SPLITS

    if kind != "all" and kind not in LIST_KINDS:
        raise UnknownNameError("list kind", kind, LIST_KINDS)
    show = LIST_KINDS if kind == "all" else (kind,)
    if "datasets" in show:
        from benchmark import datasets

        print("datasets:")
        for name in datasets.DATASETS.names():
            dataset = datasets.load(name, allow_download=False)
            print(datasets.format_card(datasets.card(name, dataset)))
    if "tasks" in show or "suites" in show or "systems" in show:
        from benchmark.tasks import SUITES, SYSTEMS, TASKS, load_registry

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
            how = (f"systems {', '.join(suite.systems)}" if suite.systems
                   else f"{suite.num_samples} trials/split, space {suite.search_space}")
            print(f"  {name:<24}{how}: {', '.join(suite.tasks)}")
    if "systems" in show:
        print("systems:")
        for name in SYSTEMS.names():
            system = SYSTEMS.get(name)
            budget = f"{system.num_samples} trials/fold" if system.num_samples > 1 else "fixed"
            print(f"  {name:<24}{system.search_space:<16}{budget:<16}{system.description}")
    if "search-spaces" in show:
        from benchmark.search_space import available_search_spaces, load_search_space

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
            print(f"  {name:<22}{entry.modality:<10}{entry.description}" + ("" if origin == "benchmark" else f"  [{origin}]"))
    if "splits" in show:
        print("splits:")
        for name in SPLITS.names():
            print(f"  {name:<22}{SPLITS.get(name).description}")
    if "text-fields" in show:
        print("text fields:")
        for name, template in DEFAULT_TEMPLATES.items():
            print(f"  {name:<22}{' '.join(template)}")
    if "heads" in show:
        print("heads:\n  linear                dual linear heads (paper)\n  mlp                   two-layer MLP heads\n"
              "  memory_bank           pseudo-tokens + shared learnable-query cross-attention (Song et al.)")
    if "losses" in show:
        print("loss terms (weights / switches):\n  infonce               symmetric InfoNCE, --temperature, --margin, "
              "--hard-negative-beta, --same-target-weight\n  u2u                   second-order KL(TT||MM)+KL(MM||TT), --u2u-weight\n"
              "  u2c                   second-order KL(TT||MT)+KL(MM||TM), --u2c-weight")
    return 0


def cmd_train(args) -> int:
    from benchmark.api import train_and_evaluate
    from benchmark.config import TrialConfig

    text_templates = {"custom": args.text_template} if args.text_template else None
    split = args.split or ("published" if args.split_column else "random")
    text_field = args.text_field or ("text_rich_no_drug" if split == "prospective" else "text_rich")
    config = TrialConfig.model_validate({
        "mol_encoder": {"name": args.mol_encoder, "params": _parse_params(args.mol_encoder_param, "--mol-encoder-param")},
        "text_encoder": {"name": args.text_encoder, "params": _parse_params(args.text_encoder_param, "--text-encoder-param")},
        "text_field": text_field,
        "bridge": {"head": args.head, "dim": args.dim},
        "loss": {"temperature": args.temperature, "margin": args.margin, "hard_negative_beta": args.hard_negative_beta,
                 "same_target_weight": args.same_target_weight, "infonce_weight": args.infonce_weight,
                 "u2u_weight": args.u2u_weight, "u2c_weight": args.u2c_weight},
        "optim": {"lr": args.lr, "weight_decay": args.weight_decay, "epochs": args.epochs, "batch_size": args.batch_size},
        "seed": args.seed,
    })
    result = train_and_evaluate(
        config, data=args.data, dataset=args.dataset, split_column=args.split_column, columns=_columns(args),
        text_templates=text_templates, max_heavy_atoms=args.max_heavy_atoms, split=split,
        split_seed=args.split_seed, fractions=tuple(args.fractions), side=args.eval_split, n_boot=args.bootstrap,
        cache_dir=args.cache_dir, device=args.device,
    )
    print(result.table())
    if args.output:
        out = result.write_json(args.output)
        queries = result.write_per_query(Path(args.output).with_suffix(".queries.parquet"))
        print(f"\nwrote {out} and {queries}")
    return 0


def run_options(args):
    """RunOptions from the parsed flags; a value out of range is an error naming its flag."""
    from benchmark.runner import RUN_FLAGS, RunOptions

    values = {name: getattr(args, flag.lstrip("-").replace("-", "_")) for name, flag in RUN_FLAGS.items()}
    values = {name: value for name, value in values.items() if value is not None}  # unset: RunOptions' default
    try:
        return RunOptions(**values, allow_download=not args.offline)
    except ValidationError as exc:
        problems = "; ".join(f"{RUN_FLAGS.get(str(e['loc'][0]), e['loc'][0])} {e.get('input')!r}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid option: {problems}") from None


def cmd_run(args) -> int:
    from benchmark.interrupts import INTERRUPTED_EXIT, Interrupted
    from benchmark.runner import format_summary, resume_command, run_suite

    from benchmark.progress import make_progress

    options = run_options(args)
    progress = make_progress()
    try:
        results = run_suite(options, progress=progress)
    except Interrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"\ninterrupted again: stopped at once; the state saved last is intact; resume with: "
              f"{resume_command(options)}", file=sys.stderr)
        return INTERRUPTED_EXIT
    finally:
        progress.close()
    print()
    if results.get("already_finished"):
        print(f"run {results['run_uid']} in {Path(args.output).resolve()} had already finished: nothing was run or "
              "logged again (start a new run without --resume to repeat it)")
    print(format_summary(results))
    print(f"\nresults: {Path(args.output).resolve() / 'results.json'}; MLflow: {results['tracking_uri']} "
          f"(experiment {results['experiment']}); browse with: mlflow ui --backend-store-uri {results['tracking_uri']}")
    for name, route in results.get("views", {}).items():
        print(f"  saved view {name}: http://127.0.0.1:5000/{route}")
    return 0


def cmd_report(args) -> int:
    from benchmark.report import generate_report
    from benchmark.tracking import default_tracking_uri

    if args.practical_difference is not None and not 0 <= args.practical_difference < 1:
        raise ConfigError(f"--practical-difference must lie in [0, 1), got {args.practical_difference}")
    written = generate_report(args.tracking_uri or default_tracking_uri(), experiments=args.experiment, out=args.out,
                              practical_difference=args.practical_difference)
    print(f"wrote {written['markdown']} and {written['html']} with {len(written) - 2} figure(s)")
    return 0


def cmd_download(args) -> int:
    from benchmark.data.chembl import download_to_cache
    from benchmark.datasets import DATASETS

    entry = DATASETS.get(args.dataset)
    path = download_to_cache(out_dir=args.out, force=args.force, min_phase=entry.min_phase, name=entry.download_name)
    print(f"ChEMBL dataset {entry.name!r}: {path} (provenance in {path.with_suffix('.json')})")
    print(f"used from the cache by: python -m benchmark train --dataset {entry.name} (or --data {path})")
    return 0


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
            from benchmark.perf import SECTIONS, run_perf

            sections = tuple(x.strip() for x in args.sections.split(",") if x.strip()) if args.sections else SECTIONS
            run_perf(data=args.data, repeats=args.repeats, epochs=args.epochs, out=args.out, device=args.device,
                     sections=sections, tune_trials=args.tune_trials, max_pairs=args.max_pairs,
                     compare_pairs=args.compare_pairs, suite=args.suite)
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
