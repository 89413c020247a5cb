"""`python -m benchmark download-chembl`: the ChEMBL download, cached."""

from __future__ import annotations

from benchmark.data.chembl import download_to_cache
from benchmark.data.datasets import DATASETS


def cmd_download(args) -> int:
    entry = DATASETS.get(args.dataset)
    path = download_to_cache(out_dir=args.out, force=args.force, min_phase=entry.min_phase, name=entry.download_name)
    print(f"ChEMBL dataset {entry.name!r}: {path} (provenance in {path.with_suffix('.json')})")
    print(f"used from the cache by: python -m benchmark train --dataset {entry.name} (or --data {path})")
    return 0
