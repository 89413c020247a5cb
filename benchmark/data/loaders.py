"""Read pair tables: ChEMBL-schema files (snapshot or download) and bring-your-own pairs.

Everything is mapped onto canonical columns before cleaning:
molecule_id, smiles, mechanism, target_id, target_name, action_type, drug_name, and where the
source has them phase (highest clinical phase, for the prospective split) and split_label (a
published train / val / test assignment). `target_id` doubles as the group for within-target
(grouped) retrieval.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from benchmark.core.errors import DataError
from benchmark.data.cleaning import clean_pairs

DATA_ENV = "BENCHMARK_DATA"
#: a folder holding the ChEMBL snapshot files (an installed suite, a `ray job submit` working dir)
SNAPSHOT_ENV = "BENCHMARK_SNAPSHOT_DIR"
SNAPSHOT_RELATIVE = Path("shared/data/chembl/approved_drug_mechanisms.csv")

CANONICAL_COLUMNS = (
    "molecule_id",
    "smiles",
    "mechanism",
    "target_id",
    "target_name",
    "action_type",
    "drug_name",
    "phase",
    "split_label",
)
#: columns that may hold a molecule's highest clinical phase (downloads: max_phase; snapshots: max_phase_chembl28)
PHASE_COLUMNS = ("max_phase", "max_phase_chembl28")


@dataclass(frozen=True)
class ColumnMap:
    """Which input column holds each canonical field. `smiles` and `text` are required."""

    smiles: str
    text: str
    id: str | None = None
    group: str | None = None
    target_name: str | None = None
    action_type: str | None = None
    drug_name: str | None = None
    phase: str | None = None
    split: str | None = None  # a published split: train / val (valid, validation) / test per row

    def as_canonical(self) -> dict[str, str | None]:
        return {
            "molecule_id": self.id,
            "smiles": self.smiles,
            "mechanism": self.text,
            "target_id": self.group,
            "target_name": self.target_name,
            "action_type": self.action_type,
            "drug_name": self.drug_name,
            "phase": self.phase,
            "split_label": self.split,
        }


#: the ChEMBL web-service / snapshot schema
CHEMBL_COLUMNS = ColumnMap(
    smiles="canonical_smiles",
    text="mechanism_of_action",
    id="molecule_chembl_id",
    group="target_chembl_id",
    target_name="target_pref_name",
    action_type="action_type",
    drug_name="pref_name",
)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """CSV, TSV (or .txt with tabs) and parquet, chosen by suffix."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist; pass --data PATH or set {DATA_ENV}")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".tsv", ".tsv.gz", ".tab", ".txt", ".csv", ".csv.gz"):
            sep = "," if suffix.startswith(".csv") else "\t"
            _check_header(path, sep)
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=True)
    except DataError:
        raise
    except UnicodeDecodeError as exc:  # name the line, not the byte offset pandas reports
        raise DataError(
            f"cannot read {str(path)!r}: line {_line_of_byte(path, exc.start)} is not UTF-8 ({exc.reason}, byte "
            f"{exc.object[exc.start : exc.start + 1]!r}); save the file as UTF-8"
        ) from None
    except Exception as exc:  # pandas raises many kinds; all mean "unreadable file"
        raise DataError(f"cannot read {str(path)!r} as {suffix.lstrip('.')}: {exc}") from exc
    raise DataError(f"data file {str(path)!r} has unsupported suffix {path.suffix!r}; use .csv, .tsv or .parquet")


def _check_header(path: Path, sep: str) -> None:
    """A header that names a column twice is refused (pandas would rename the second 'name.1' and the loader
    would silently read the first)."""
    try:
        names = list(pd.read_csv(path, sep=sep, dtype=str, nrows=1, header=None).iloc[0])
    except (pd.errors.EmptyDataError, IndexError):
        return  # an empty file: the full read says so
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if isinstance(name, str) and name in seen:
            raise DataError(
                f"{str(path)!r}: the header names column {name!r} twice (columns {seen[name]} and {position}); "
                "rename one so that it is clear which to read"
            )
        seen.setdefault(name, position)


def _line_of_byte(path: Path, offset: int) -> int | str:
    """The 1-based line holding the first undecodable byte (pandas' offset counts from the start of its read
    chunk, so the line is found by decoding the file itself)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return raw.count(b"\n", 0, exc.start) + 1
    return f"near byte {offset}"


def is_chembl_schema(frame: pd.DataFrame) -> bool:
    return {CHEMBL_COLUMNS.smiles, CHEMBL_COLUMNS.text, CHEMBL_COLUMNS.id} <= set(frame.columns)


def with_phase(columns: ColumnMap, frame: pd.DataFrame) -> ColumnMap:
    """The ChEMBL column map plus the phase column this table has (if any)."""

    phase = next((c for c in PHASE_COLUMNS if c in frame.columns), None)
    return replace(columns, phase=phase) if columns.phase is None and phase else columns


def guess_columns(frame: pd.DataFrame) -> ColumnMap:
    """Column names for a bring-your-own file when none are given."""
    if is_chembl_schema(frame):
        return with_phase(CHEMBL_COLUMNS, frame)
    lower = {c.lower(): c for c in frame.columns}

    def pick(*candidates: str) -> str | None:
        return next((lower[c] for c in candidates if c in lower), None)

    smiles = pick("smiles", "canonical_smiles", "isomeric_smiles")
    text = pick("text", "description", "mechanism", "mechanism_of_action", "caption")
    if smiles is None or text is None:
        raise DataError(
            f"cannot tell which columns hold SMILES and text among {list(frame.columns)}; "
            "name them with --smiles-column and --text-column"
        )
    return ColumnMap(
        smiles=smiles,
        text=text,
        id=pick("id", "cid", "molecule_id", "chembl_id"),
        group=pick("group", "target", "target_id"),
    )


def to_canonical(frame: pd.DataFrame, columns: ColumnMap, *, source: str) -> pd.DataFrame:
    mapping = columns.as_canonical()
    missing = [col for col in mapping.values() if col is not None and col not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: column(s) {missing} not found; available columns: {list(frame.columns)}. "
            "Fix the column options (--smiles-column, --text-column, --id-column, --group-column, --split-column)."
        )
    out = pd.DataFrame(index=frame.index)
    for canonical, col in mapping.items():
        out[canonical] = (
            frame[col].astype("string") if col is not None else pd.Series(pd.NA, index=frame.index, dtype="string")
        )
    if columns.id is None:
        out["molecule_id"] = pd.Series([f"row{i}" for i in range(len(frame))], index=frame.index, dtype="string")
    return out.reset_index(drop=True)


def snapshot_folder() -> Path | None:
    """$BENCHMARK_SNAPSHOT_DIR, else shared/data/chembl beside (or above) the working directory or the package."""
    if os.environ.get(SNAPSHOT_ENV):
        return Path(os.environ[SNAPSHOT_ENV])
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            for base in (folder, folder.parent):
                if (base / SNAPSHOT_RELATIVE).exists():
                    return (base / SNAPSHOT_RELATIVE).parent
    return None


def find_default_data() -> Path:
    """BENCHMARK_DATA, else the shared ChEMBL snapshot next to (or above) the working directory."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    folder = snapshot_folder()
    if folder is not None:
        return folder / SNAPSHOT_RELATIVE.name
    raise DataError(
        "no dataset given and no ChEMBL snapshot found: pass --data PATH, set "
        f"{DATA_ENV}, or download one with `python -m benchmark download-chembl`"
    )


def load_dataset(
    path: str | os.PathLike | None = None,
    columns: ColumnMap | None = None,
    *,
    text_templates: dict[str, tuple[str, ...]] | None = None,
    split_column: str | None = None,
    max_heavy_atoms: int | None = None,
):
    """Load and clean a pairs file; `path=None` uses BENCHMARK_DATA or the shared snapshot.

    `split_column` names a column with a published split (train / val / test per row); structures above
    `max_heavy_atoms` (default `benchmark.chem.MAX_HEAVY_ATOMS`) are dropped and counted."""

    path = Path(path) if path is not None else find_default_data()
    if path.is_dir():
        raise DataError(f"--data {str(path)!r} is a folder; give the pairs file inside it (.csv, .tsv or .parquet)")
    frame = read_table(path)
    if frame.empty:
        raise DataError(f"data file {str(path)!r} has no rows")
    columns = columns or guess_columns(frame)
    if columns is CHEMBL_COLUMNS:
        columns = with_phase(columns, frame)
    if split_column:
        columns = replace(columns, split=split_column)
    canonical = to_canonical(frame, columns, source=str(path))
    return clean_pairs(
        canonical,
        source=str(path),
        has_groups=columns.group is not None,
        text_templates=text_templates,
        **({"max_heavy_atoms": max_heavy_atoms} if max_heavy_atoms else {}),
    )
