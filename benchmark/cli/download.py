"""`python -m benchmark download-chembl`: the ChEMBL download, cached."""

from __future__ import annotations

import argparse

from benchmark.data.chembl import download_to_cache
from benchmark.data.datasets import DATASETS

NAME = "download-chembl"
HELP = "download a dataset (drugs and mechanisms) from the ChEMBL web services"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="approved", help="approved (max_phase 4) | clinical (max_phase >= 1)")
    parser.add_argument("--out", help="folder for the parquet (default: the cache directory)")
    parser.add_argument("--force", action="store_true", help="download again even if cached")


def execute(args) -> int:
    entry = DATASETS.get(args.dataset)
    path = download_to_cache(out_dir=args.out, force=args.force, min_phase=entry.min_phase, name=entry.download_name)
    print(f"ChEMBL dataset {entry.name!r}: {path} (provenance in {path.with_suffix('.json')})")
    print(f"used from the cache by: python -m benchmark train --dataset {entry.name} (or --data {path})")
    return 0
