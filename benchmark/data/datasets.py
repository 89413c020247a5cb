"""Datasets as named, documented entries: where the data comes from and what it holds (cards).

`approved` (max_phase 4, the paper's) and `clinical` (max_phase >= 1: approved plus drugs in
clinical development) are both real ChEMBL downloads (chembl_webresource_client: molecules by
phase, their `mechanism` records, `target` names), cached with the ChEMBL release and row
counts, with the offline snapshots in `shared/data/chembl/` as the fallback where the web
services cannot be reached. A card states source, release, licence and citation, counts (pairs,
molecules, targets, molecules per phase, drops by reason) and the fingerprint of the cleaned
content, so a number can always be traced back to exactly the data it came from.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.errors import DataError, DownloadError
from benchmark.core.io import cache_dir
from benchmark.core.registry import Registry
from benchmark.data.chem import fingerprint_collisions
from benchmark.data.chembl import download_to_cache
from benchmark.data.cleaning import PairDataset
from benchmark.data.loaders import DATA_ENV, SNAPSHOT_ENV, load_dataset, snapshot_folder

log = logging.getLogger(__name__)

LICENCE = "CC BY-SA 3.0 (ChEMBL); results derived from it must credit ChEMBL and be shared alike"
CITATION = (
    "Gaulton et al., The ChEMBL database in 2017, Nucleic Acids Res. 2017 (and 2012); "
    "Zdrazil et al., The ChEMBL Database in 2023, Nucleic Acids Res. 2024"
)
SNAPSHOT_RELEASE = (
    "offline snapshot: ChEMBL 28 molecules and phases joined with ChEMBL 33 mechanisms and "
    "target names (mixed releases; see shared/data/chembl/README.md)"
)


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    min_phase: int  # molecules whose highest clinical phase is at least this
    snapshot: str  # file name of the offline snapshot in shared/data/chembl/
    default: bool = False  # the dataset that --data / $BENCHMARK_DATA replace

    @property
    def download_name(self) -> str:
        return Path(self.snapshot).with_suffix(".parquet").name


DATASETS: Registry[DatasetEntry] = Registry("dataset")
DATASETS.register(
    "approved",
    DatasetEntry(
        "approved",
        "ChEMBL approved drugs (max_phase 4) and their curated mechanisms of action: the paper's data.",
        4,
        "approved_drug_mechanisms.csv",
        default=True,
    ),
)
DATASETS.register(
    "clinical",
    DatasetEntry(
        "clinical",
        "ChEMBL drugs in clinical development or approved (max_phase 1-4) and their mechanisms: "
        "nearly twice the structured pairs of `approved`; its phase 1-3 molecules are the "
        "investigational compounds of the prospective split.",
        1,
        "clinical_drug_mechanisms.csv",
    ),
)


def _snapshot_folder() -> Path:
    folder = snapshot_folder()
    if folder is None:
        raise DataError(
            f"no ChEMBL snapshot found (${SNAPSHOT_ENV}, or shared/data/chembl beside the working directory) "
            "and no download cached: set it to the snapshot's folder, or run "
            "`python -m benchmark download-chembl` where the ChEMBL web services answer"
        )
    return folder


def resolve_path(name: str, *, data: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """Where dataset `name` is read from: --data / $BENCHMARK_DATA (the default dataset only), else a cached
    ChEMBL download, else a fresh one where the services answer (`allow_download`), else the offline snapshot."""

    entry = DATASETS.get(name)
    if entry.default and data:
        return Path(data)
    if entry.default and os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    cached = cache_dir() / "chembl" / entry.download_name
    if cached.exists():
        return cached
    if allow_download:
        try:
            return download_to_cache(min_phase=entry.min_phase, name=entry.download_name, retries=2, base_delay=1.0)
        except DownloadError as exc:
            log.info("ChEMBL download unavailable (%s...); using the offline snapshot", str(exc)[:90])
    return _snapshot_folder() / entry.snapshot


def load(
    name: str, *, data: str | os.PathLike | None = None, allow_download: bool = True, max_heavy_atoms: int | None = None
) -> PairDataset:
    return load_dataset(resolve_path(name, data=data, allow_download=allow_download), max_heavy_atoms=max_heavy_atoms)


def card(name: str, dataset: PairDataset) -> dict:
    """The documented facts of a loaded dataset."""
    entry = DATASETS.get(name)
    source = Path(dataset.source)
    provenance = source.with_suffix(".json")
    if source.suffix == ".parquet" and provenance.exists():
        facts = json.loads(provenance.read_text())
        origin, release = "ChEMBL web services (chembl_webresource_client)", f"ChEMBL {facts.get('chembl_release')}"
    else:
        origin, release = f"offline snapshot {source.name}", SNAPSHOT_RELEASE
    phases = dataset.molecule_phases()
    by_phase = (
        {} if phases is None else {str(int(p)): int((phases == p).sum()) for p in sorted(set(phases[phases > 0]))}
    )
    summary = dataset.summary()
    return {
        "name": entry.name,
        "description": entry.description,
        "source": origin,
        "path": str(source),
        "release": release,
        "licence": LICENCE,
        "citation": CITATION,
        "counts": {
            "pairs": summary["n_pairs"],
            "molecules": summary["n_molecules"],
            "targets": summary["n_groups"],
            "input_rows": summary["n_input_rows"],
            "molecules_by_phase": by_phase,
            "dropped": summary["dropped"],
        },
        "fingerprint": dataset.fingerprint,
        "fingerprint_collisions": {
            "ecfp4": fingerprint_collisions(list(dataset.molecules)),
            "ecfp4-chiral": fingerprint_collisions(list(dataset.molecules), chirality=True),
        },
    }


def format_card(c: dict) -> str:
    counts, collisions = c["counts"], c["fingerprint_collisions"]
    phases = ", ".join(f"phase {p}: {n}" for p, n in counts["molecules_by_phase"].items()) or "-"
    dropped = ", ".join(f"{k} {v}" for k, v in counts["dropped"].items())
    return "\n".join(
        [
            f"  {c['name']}: {c['description']}",
            f"    source       {c['source']} ({c['path']})",
            f"    release      {c['release']}",
            f"    licence      {c['licence']}",
            f"    citation     {c['citation']}",
            f"    counts       {counts['pairs']} pairs, {counts['molecules']} molecules, {counts['targets']} targets "
            f"(from {counts['input_rows']} rows); molecules by phase: {phases}",
            f"    dropped      {dropped}",
            f"    fingerprint  {c['fingerprint']}",
            f"    collisions   {collisions['ecfp4']} molecules share their ECFP4 bits with another (stereoisomers "
            f"can only tie); {collisions['ecfp4-chiral']} with chirality (ecfp4-chiral)",
        ]
    )
