"""Download drugs and their mechanisms from the ChEMBL web services.

The real path for users with internet: molecules by clinical phase (approved: max_phase = 4;
clinical: max_phase >= 1), their `mechanism` records, target names and types from `target`. The
result lands as parquet in the cache directory with the ChEMBL release and row counts beside it, in the same schema as
the offline snapshot, so `load_dataset` reads either.

chembl_webresource_client fetches a schema when imported and raises without network, so it
is imported only inside `new_chembl_client`. Tests pass a fake client with the same
resources (`molecule`, `mechanism`, `target`) serving recorded responses.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from benchmark.core.errors import DownloadError
from benchmark.core.io import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

STATUS_URL = "https://www.ebi.ac.uk/chembl/api/data/status.json"
MOLECULE_FIELDS = ["molecule_chembl_id", "pref_name", "max_phase", "molecule_structures"]
MECHANISM_FIELDS = ["molecule_chembl_id", "mechanism_of_action", "action_type", "target_chembl_id"]
TARGET_FIELDS = ["target_chembl_id", "pref_name", "target_type", "organism"]
CHUNK = 50  # ids per `__in` filter: keeps URLs short


def new_chembl_client():
    """The real client (imported lazily: it needs network at import time)."""
    try:
        from chembl_webresource_client.new_client import (
            new_client,  # chembl_webresource_client: imported only for a download (it touches the network on import)
        )
    except Exception as exc:
        raise DownloadError(
            f"cannot start chembl_webresource_client ({type(exc).__name__}: {exc}); the ChEMBL web services "
            "are unreachable from here. Use the offline snapshot with --data PATH or BENCHMARK_DATA."
        ) from exc
    return new_client


def fetch_release() -> str:
    import requests  # requests: imported only for a download

    reply = requests.get(STATUS_URL, timeout=30)
    reply.raise_for_status()
    return str(reply.json().get("chembl_db_version", "unknown"))


def with_retries(
    what: str,
    call: Callable[[], T],
    *,
    attempts: int = 4,
    base_delay: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `call`, retrying with exponential backoff; a DownloadError naming `what` at the end."""
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # network stacks raise anything from OSError to HTTPError
            last = exc
            if attempt + 1 < attempts:
                delay = base_delay * 2**attempt
                log.warning("ChEMBL %s failed (%s); retry %d/%d in %.0fs", what, exc, attempt + 1, attempts - 1, delay)
                sleep(delay)
    raise DownloadError(
        f"ChEMBL endpoint {what!r} could not be reached after {attempts} attempts "
        f"({type(last).__name__}: {last}). Check your network or use the offline snapshot with --data PATH."
    ) from last


def _chunks(ids: Sequence[str], size: int = CHUNK) -> Iterable[list[str]]:  # noqa: D103
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:10]


def download_mechanisms(
    client: Any = None,
    *,
    min_phase: int = 4,
    release: str | Callable[[], str] | None = None,
    retries: int = 4,
    base_delay: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    partial_dir: str | os.PathLike | None = None,
    chunk: int = CHUNK,
) -> tuple[pd.DataFrame, dict]:
    """Molecules of phase >= `min_phase` x mechanisms x targets, in the snapshot's schema, and provenance.

    With `partial_dir`, every answered request is kept there as JSON, so a download that failed
    midway resumes where it stopped instead of starting over.
    """
    client = client if client is not None else new_chembl_client()
    partial = Path(partial_dir) if partial_dir is not None else None

    def fetch(what: str, query: Callable[[], Iterable[dict]], key: str | None = None) -> list[dict]:
        saved = partial / f"{key}.json" if partial is not None and key else None
        if saved is not None and saved.exists():
            return json.loads(saved.read_text())
        records = with_retries(
            what, lambda: [dict(r) for r in query()], attempts=retries, base_delay=base_delay, sleep=sleep
        )
        if saved is not None:
            atomic_write_bytes(saved, json.dumps(records).encode())
        return records

    if not 1 <= min_phase <= 4:
        raise ValueError(f"min_phase must be 1-4 (ChEMBL's clinical phases), got {min_phase}")
    lookup = {"max_phase": min_phase} if min_phase == 4 else {"max_phase__gte": min_phase}
    what = "molecule?" + "&".join(f"{k}={v}" for k, v in lookup.items())
    molecules = fetch(what, lambda: client.molecule.filter(**lookup).only(MOLECULE_FIELDS), "molecules")
    mol_rows = {}
    for record in molecules:
        structures = record.get("molecule_structures") or {}
        mol_rows[record["molecule_chembl_id"]] = {
            "molecule_chembl_id": record["molecule_chembl_id"],
            "pref_name": record.get("pref_name"),
            "canonical_smiles": structures.get("canonical_smiles"),
            "max_phase": record.get("max_phase"),
        }
    ids = sorted(mol_rows)

    mechanisms: list[dict] = []
    for i, part in enumerate(_chunks(ids, chunk)):
        mechanisms += fetch(
            "mechanism",
            lambda part=part: client.mechanism.filter(molecule_chembl_id__in=part).only(MECHANISM_FIELDS),
            f"mechanism-{i}-{_digest(part)}",
        )
    target_ids = sorted({m["target_chembl_id"] for m in mechanisms if m.get("target_chembl_id")})
    targets: dict[str, dict] = {}
    for i, part in enumerate(_chunks(target_ids, chunk)):
        for record in fetch(
            "target",
            lambda part=part: client.target.filter(target_chembl_id__in=part).only(TARGET_FIELDS),
            f"target-{i}-{_digest(part)}",
        ):
            targets[record["target_chembl_id"]] = record

    rows = []
    for mech in mechanisms:
        mol = mol_rows.get(mech["molecule_chembl_id"])
        if mol is None:
            continue
        target = targets.get(mech.get("target_chembl_id") or "", {})
        rows.append(
            {
                **mol,
                "mechanism_of_action": mech.get("mechanism_of_action"),
                "action_type": mech.get("action_type"),
                "target_chembl_id": mech.get("target_chembl_id"),
                "target_pref_name": target.get("pref_name"),
                "target_type": target.get("target_type"),
            }
        )
    columns = [
        "molecule_chembl_id",
        "pref_name",
        "canonical_smiles",
        "max_phase",
        "mechanism_of_action",
        "action_type",
        "target_chembl_id",
        "target_pref_name",
        "target_type",
    ]
    table = pd.DataFrame(rows, columns=columns).astype("string")
    if callable(release) or release is None:
        release_value = with_retries(
            "status", release or fetch_release, attempts=retries, base_delay=base_delay, sleep=sleep
        )
    else:
        release_value = release
    provenance = {
        "chembl_release": release_value,
        "molecule_filter": lookup,
        "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_molecules": len(mol_rows),
        "n_mechanisms": len(mechanisms),
        "n_targets": len(targets),
        "n_rows": len(table),
    }
    return table, provenance


def download_approved_mechanisms(client: Any = None, **kwargs) -> tuple[pd.DataFrame, dict]:
    """Approved drugs (max_phase 4): the paper's data."""
    return download_mechanisms(client, min_phase=4, **kwargs)


def download_to_cache(
    client: Any = None,
    *,
    out_dir: str | os.PathLike | None = None,
    force: bool = False,
    min_phase: int = 4,
    name: str = "approved_drug_mechanisms.parquet",
    **kwargs,
) -> Path:
    """Download once into `<cache>/chembl/<name>` (+ `.json` provenance); molecules of phase >= `min_phase`."""
    folder = Path(out_dir) if out_dir is not None else cache_dir() / "chembl"
    target = folder / name
    if target.exists() and not force:
        log.info("using cached ChEMBL download %s", target)
        return target
    partial = folder / (".partial" if min_phase == 4 else f".partial-{Path(name).stem}")
    table, provenance = download_mechanisms(client, min_phase=min_phase, partial_dir=partial, **kwargs)
    folder.mkdir(parents=True, exist_ok=True)

    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(target, buffer.getvalue())
    atomic_write_bytes(target.with_suffix(".json"), json.dumps(provenance, indent=2).encode())

    shutil.rmtree(partial, ignore_errors=True)  # complete: the pieces are no longer needed
    return target
