"""`python -m benchmark train`: one configuration trained, tested once, written as JSON."""

from __future__ import annotations

from pathlib import Path

from benchmark.api import train_and_evaluate
from benchmark.cli.parser import _columns, _parse_params
from benchmark.model.config import TrialConfig


def cmd_train(args) -> int:
    text_templates = {"custom": args.text_template} if args.text_template else None
    split = args.split or ("published" if args.split_column else "random")
    text_field = args.text_field or ("text_rich_no_drug" if split == "prospective" else "text_rich")
    config = TrialConfig.model_validate(
        {
            "mol_encoder": {
                "name": args.mol_encoder,
                "params": _parse_params(args.mol_encoder_param, "--mol-encoder-param"),
            },
            "text_encoder": {
                "name": args.text_encoder,
                "params": _parse_params(args.text_encoder_param, "--text-encoder-param"),
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
        columns=_columns(args),
        text_templates=text_templates,
        max_heavy_atoms=args.max_heavy_atoms,
        split=split,
        split_seed=args.split_seed,
        fractions=tuple(args.fractions),
        side=args.eval_split,
        n_boot=args.bootstrap,
        cache_dir=args.cache_dir,
        device=args.device,
    )
    print(result.table())
    if args.output:
        out = result.write_json(args.output)
        queries = result.write_per_query(Path(args.output).with_suffix(".queries.parquet"))
        print(f"\nwrote {out} and {queries}")
    return 0
