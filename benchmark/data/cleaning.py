"""Cleaning: every dropped row is counted by reason, and the cleaned table is fingerprinted.

Rows are keyed by the structure key (largest-fragment canonical SMILES): salt forms of one
drug collapse onto one molecule, which is what de-duplication, galleries and splits use.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from benchmark.core.errors import DataError, UnknownNameError
from benchmark.data.chem import MAX_HEAVY_ATOMS, structure_keys
from benchmark.data.text_fields import DEFAULT_TEMPLATES, parse_template, render

log = logging.getLogger(__name__)

DROP_REASONS = ("missing_structure", "missing_text", "too_large", "rdkit_timeout", "invalid_smiles", "duplicate_pair")


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | (series.astype("string").str.strip() == "")


@dataclass
class PairDataset:
    """Cleaned (molecule, text) pairs.

    `pairs` has the canonical columns plus `structure_key` and `mol_index` (position of the
    structure key in `molecules`). `group` is the target id (or None without groups).
    """

    pairs: pd.DataFrame
    molecules: list[str]
    dropped: dict[str, int]
    n_input_rows: int
    salts_stripped: int
    invalid_smiles_examples: list[str]
    source: str
    has_groups: bool
    text_templates: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    _text_cache: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def n_molecules(self) -> int:
        return len(self.molecules)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the cleaned content; changes whenever any kept value changes."""
        cols = ["structure_key", "molecule_id", "mechanism", "target_id", "target_name", "action_type", "drug_name"]
        blob = self.pairs[cols].fillna("").to_csv(index=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def text_fields(self) -> list[str]:
        return sorted(self.text_templates)

    def texts(self, text_field: str) -> list[str]:
        """The rendered text of every pair for one text field."""
        return list(self._rendered(text_field))

    def _rendered(self, text_field: str) -> tuple[str, ...]:
        cache = self._text_cache
        if text_field not in cache:
            if text_field not in self.text_templates:
                raise UnknownNameError("text field", text_field, self.text_templates)
            template = self.text_templates[text_field]
            records = self.pairs.to_dict("records")
            cache[text_field] = tuple(render(template, row) for row in records)
        return cache[text_field]

    def text_index(self, text_field: str) -> tuple[list[str], np.ndarray]:
        """Unique texts (sorted) and, for every pair, the position of its text among them."""
        texts = self._rendered(text_field)
        unique = sorted(set(texts))
        where = {t: i for i, t in enumerate(unique)}
        return unique, np.fromiter((where[t] for t in texts), dtype=np.int64, count=len(texts))

    @property
    def mol_index(self) -> np.ndarray:
        return self.pairs["mol_index"].to_numpy(dtype=np.int64)

    def molecule_phases(self) -> np.ndarray | None:
        """Highest clinical phase of every molecule (over its rows; NaN where unknown), or None without phases."""
        if "phase" not in self.pairs or self.pairs["phase"].isna().all():
            return None
        phase = pd.to_numeric(self.pairs["phase"], errors="coerce").to_numpy(float)
        out = np.full(self.n_molecules, np.nan)
        valid = ~np.isnan(phase)
        np.fmax.at(out, self.mol_index[valid], phase[valid])
        return out

    @property
    def split_labels(self) -> np.ndarray | None:
        """The published split label of every pair, or None when the data has none."""
        if "split_label" not in self.pairs or self.pairs["split_label"].isna().all():
            return None
        return self.pairs["split_label"].astype("string").str.strip().str.lower().fillna("").to_numpy(dtype=object)

    @property
    def groups(self) -> np.ndarray | None:
        """Target of every pair (None where unknown), or None when the dataset has no groups."""
        if not self.has_groups:
            return None
        return np.array([None if pd.isna(g) else str(g) for g in self.pairs["target_id"]], dtype=object)

    def summary(self) -> dict:
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "n_input_rows": self.n_input_rows,
            "n_pairs": self.n_pairs,
            "n_molecules": self.n_molecules,
            "n_groups": int(self.pairs["target_id"].nunique()) if self.has_groups else 0,
            "dropped": dict(self.dropped),
            "salts_stripped": self.salts_stripped,
            "invalid_smiles_examples": self.invalid_smiles_examples,
        }


def _refuse_conflicting_ids(frame: pd.DataFrame, source: str) -> None:
    """One id naming two different structures is ambiguous data: say which, rather than guess."""
    per_id = frame.groupby("molecule_id")["structure_key"].nunique()
    conflicting = per_id[per_id > 1].index.tolist()
    if conflicting:
        examples = []
        for mid in conflicting[:3]:
            rows = frame.index[frame["molecule_id"] == mid].tolist()
            keys = sorted(frame.loc[frame["molecule_id"] == mid, "structure_key"].unique())
            examples.append(f"{mid!r} (rows {rows[:4]}: {' vs '.join(keys[:2])})")
        raise DataError(
            f"{source}: {len(conflicting)} molecule id(s) name more than one structure, e.g. {'; '.join(examples)}. "
            "Give each structure its own id, or drop the id column option to let rows be numbered."
        )


def clean_pairs(
    frame: pd.DataFrame,
    *,
    source: str,
    has_groups: bool,
    text_templates: dict[str, tuple[str, ...]] | None = None,
    max_heavy_atoms: int = MAX_HEAVY_ATOMS,
) -> PairDataset:
    """Drop unusable rows (counted by reason), strip salts, de-duplicate, sort deterministically.

    Structures above `max_heavy_atoms` are dropped before RDKit sees them (`benchmark.chem`)."""
    templates = dict(DEFAULT_TEMPLATES)
    for name, template in (text_templates or {}).items():
        templates[name] = parse_template(template)

    n_input = len(frame)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    frame = frame.copy()
    for col in ("mechanism", "smiles"):
        frame[col] = frame[col].astype("string").str.strip()

    no_structure = _blank(frame["smiles"])
    dropped["missing_structure"] = int(no_structure.sum())
    frame = frame[~no_structure]

    no_text = _blank(frame["mechanism"])
    dropped["missing_text"] = int(no_text.sum())
    frame = frame[~no_text]

    keys, stripped, reasons = structure_keys(frame["smiles"].tolist(), max_heavy_atoms=max_heavy_atoms)
    frame = frame.assign(
        structure_key=pd.array(keys, dtype="string"), _stripped=stripped, _reason=pd.array(reasons, dtype="string")
    )
    for reason in ("too_large", "rdkit_timeout"):
        hostile = frame["_reason"] == reason
        dropped[reason] = int(hostile.sum())
        if dropped[reason]:
            log.warning(
                "dropped %d rows %s, e.g. %s",
                dropped[reason],
                f"above {max_heavy_atoms} heavy atoms" if reason == "too_large" else "on which RDKit timed out",
                frame.loc[hostile, "molecule_id"].head(5).tolist(),
            )
        frame = frame[~hostile.fillna(False)]
    invalid = frame["structure_key"].isna()
    dropped["invalid_smiles"] = int(invalid.sum())
    examples = [
        f"{mid}: {smi}" for mid, smi in frame.loc[invalid, ["molecule_id", "smiles"]].head(5).itertuples(index=False)
    ]
    if examples:
        log.warning("dropped %d rows whose SMILES RDKit cannot parse, e.g. %s", int(invalid.sum()), examples)
    frame = frame[~invalid]
    _refuse_conflicting_ids(frame, source)

    if has_groups:
        frame["target_id"] = frame["target_id"].astype("string").str.strip()
        frame.loc[_blank(frame["target_id"]), "target_id"] = pd.NA
    sort_cols = ["structure_key", "target_id", "mechanism", "molecule_id"]
    frame = frame.sort_values(sort_cols, kind="mergesort", na_position="last")
    if has_groups:  # a pair without a target is still a pair; de-duplicate it on its text
        dedupe_on = ["structure_key", "_dedupe_target"]
        frame = frame.assign(_dedupe_target=frame["target_id"].fillna("text:" + frame["mechanism"]))
    else:
        dedupe_on = ["structure_key", "mechanism"]
    duplicated = frame.duplicated(dedupe_on, keep="first")
    dropped["duplicate_pair"] = int(duplicated.sum())
    frame = frame[~duplicated]

    if frame.empty:
        raise DataError(f"{source}: no usable pairs are left after cleaning (dropped: {dropped})")

    salts = int(frame["_stripped"].sum())
    frame = frame.drop(
        columns=[c for c in ("_stripped", "_dedupe_target", "_reason") if c in frame.columns]
    ).reset_index(drop=True)
    molecules = sorted(frame["structure_key"].unique().tolist())
    position = {k: i for i, k in enumerate(molecules)}
    frame["mol_index"] = frame["structure_key"].map(position).astype(np.int64)
    return PairDataset(
        pairs=frame,
        molecules=molecules,
        dropped=dropped,
        n_input_rows=n_input,
        salts_stripped=salts,
        invalid_smiles_examples=examples,
        source=source,
        has_groups=has_groups,
        text_templates=templates,
    )
