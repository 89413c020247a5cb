"""`python -m benchmark train`: one configuration trained, tested once, written as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.api import train_and_evaluate
from benchmark.cli.options import add_data_options, column_map, parse_params, positive_int
from benchmark.model.config import TrialConfig

NAME = "train"
HELP = "train and evaluate one bridge configuration"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", help="a registered dataset: approved (default) | clinical (python -m benchmark list datasets)"
    )
    add_data_options(parser)
    g = parser.add_argument_group("split")
    g.add_argument(
        "--split",
        default=None,
        help="random (default) | scaffold | pair (leaky) | prospective | published (with --split-column)",
    )
    g.add_argument("--split-seed", type=int, default=0)
    g.add_argument(
        "--drop-leaked",
        action="store_true",
        help="on a leaky split (pair, or a published split sharing structures across sides): test only queries "
        "whose structure is not in train; the numbers with the leaked queries are reported beside them",
    )
    g.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    g.add_argument(
        "--eval-split",
        choices=("val", "test"),
        default="test",
        help="side to evaluate (choose hyper-parameters on val; test once per final configuration)",
    )
    g = parser.add_argument_group("encoders")
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
    g = parser.add_argument_group("bridge and loss")
    g.add_argument("--head", default="linear", help="linear | mlp | memory_bank")
    g.add_argument("--dim", type=int, default=256)
    g.add_argument("--temperature", type=float, default=0.07)
    g.add_argument("--margin", type=float, default=0.0)
    g.add_argument("--hard-negative-beta", type=float, default=0.0, help="weight negatives by exp(beta * similarity)")
    g.add_argument("--same-target-weight", type=float, default=1.0, help="extra weight of same-target negatives")
    g.add_argument("--infonce-weight", type=float, default=1.0)
    g.add_argument("--u2u-weight", type=float, default=0.0, help="second-order uni-to-uni KL loss weight")
    g.add_argument("--u2c-weight", type=float, default=0.0, help="second-order uni-to-cross KL loss weight")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--batch-size", type=int, default=512)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: the cores this process may use; OMP_NUM_THREADS is not read)",
    )
    g = parser.add_argument_group("evaluation and output")
    g.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples for 95%% CIs (>= 1)")
    g.add_argument("--cache-dir", help="embedding cache (default: $BENCHMARK_CACHE or ~/.cache/drug-text-benchmark)")
    g.add_argument("--output", help="write the result JSON here (per-query ranks go beside it as .queries.parquet)")
    g.add_argument("--quiet", action="store_true", help="only warnings and the result table")


def execute(args) -> int:
    text_templates = {"custom": args.text_template} if args.text_template else None
    split = args.split or ("published" if args.split_column else "random")
    text_field = args.text_field or ("text_rich_no_drug" if split == "prospective" else "text_rich")
    config = TrialConfig.model_validate(
        {
            "mol_encoder": {
                "name": args.mol_encoder,
                "params": parse_params(args.mol_encoder_param, "--mol-encoder-param"),
            },
            "text_encoder": {
                "name": args.text_encoder,
                "params": parse_params(args.text_encoder_param, "--text-encoder-param"),
            },
            "text_field": text_field,
            "bridge": {"head": args.head, "dim": args.dim},
            "loss": {
                "temperature": args.temperature,
                "margin": args.margin,
                "hard_negative_beta": args.hard_negative_beta,
                "same_target_weight": args.same_target_weight,
                "infonce_weight": args.infonce_weight,
                "u2u_weight": args.u2u_weight,
                "u2c_weight": args.u2c_weight,
            },
            "optim": {
                "lr": args.lr,
                "weight_decay": args.weight_decay,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
            },
            "seed": args.seed,
        }
    )
    result = train_and_evaluate(
        config,
        data=args.data,
        dataset=args.dataset,
        split_column=args.split_column,
        columns=column_map(args),
        text_templates=text_templates,
        max_heavy_atoms=args.max_heavy_atoms,
        split=split,
        split_seed=args.split_seed,
        fractions=tuple(args.fractions),
        side=args.eval_split,
        n_boot=args.bootstrap,
        cache_dir=args.cache_dir,
        device=args.device,
        drop_leaked=args.drop_leaked,
        threads=args.threads,
    )
    print(result.table())
    if args.output:
        out = result.write_json(args.output)
        queries = result.write_per_query(Path(args.output).with_suffix(".queries.parquet"))
        print(f"\nwrote {out} and {queries}")
    return 0
