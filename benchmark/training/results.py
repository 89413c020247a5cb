"""The single-configuration result: a JSON document, a printed table and per-query ranks."""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.io import atomic_write_bytes, hash_items
from benchmark.core.version import __version__
from benchmark.training.trial import TrialData, TrialResult

DIRECTIONS = ("text_to_molecule", "molecule_to_text", "text_to_molecule_grouped", "molecule_to_text_grouped")


def _package_version() -> str:
    return __version__


@dataclass
class BenchmarkResult:
    trial: TrialResult
    data: TrialData
    split: dict
    notes: list[str] = field(default_factory=list)
    #: with `drop_leaked`: the same bridge's metrics on every query of the leaky side, leaked ones included
    metrics_with_leaked_queries: dict | None = None
    #: torch CPU threads the fit ran with (`train --threads`)
    threads: int | None = None

    def to_json(self) -> dict:
        t = self.trial
        return {
            "package_version": _package_version(),
            "dataset": {**self.data.dataset, "n_texts": len(self.data.texts)},
            "split": {**self.split, "evaluated": t.side},
            "config": t.config.model_dump(),
            "config_digest": t.config.digest(),
            "encoders": self.data.encoders,
            "timing": {
                "encode_seconds": round(self.data.encode_seconds, 3),
                "encoded_items": self.data.encoded_items,
                "train_seconds": round(t.train_seconds, 3),
                "eval_seconds": round(t.eval_seconds, 3),
            },
            "device": t.device,
            "threads": self.threads,
            "metrics": t.metrics,
            **(
                {"metrics_with_leaked_queries": self.metrics_with_leaked_queries}
                if self.metrics_with_leaked_queries is not None
                else {}
            ),
            "baseline": t.baseline,
            "cosine_baseline": t.cosine_baseline,
            "comparisons": t.comparisons,
            "galleries": self.galleries(),
            "recall_curves": {name: run.recall_curve() for name, run in t.runs.items()},
            "history": t.history,
            "notes": self.notes,
        }

    def galleries(self) -> dict:
        """The fixed gallery of each global direction: its size, its items' hash, and the items."""
        out = {}
        for name, run in self.trial.runs.items():
            if run.gallery_items is None:
                continue
            molecules = run.direction == "text_to_molecule"
            names = self.data.molecules if molecules else self.data.texts
            items = [names[i] for i in run.gallery_items]
            features = self.data.mol_features if molecules else self.data.text_features
            trainable = molecules and self.data.graphs is not None  # graph indices, not features: ties unknown
            out[name] = {
                "modality": "molecule" if molecules else "text",
                "size": len(items),
                "checksum": hash_items(items),
                "tied_items": None if trainable else tied_rows(features[np.asarray(run.gallery_items)]),
                "items": items,
            }
        return out

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        atomic_write_bytes(path, json.dumps(self.to_json(), indent=2, default=_json_default).encode())
        return path

    def per_query_frame(self) -> pd.DataFrame:
        return query_frame(self.trial, self.data)

    def write_per_query(self, path: str | os.PathLike) -> Path:
        buffer = io.BytesIO()
        self.per_query_frame().to_parquet(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
        return Path(path)

    def table(self) -> str:
        return format_table(self.to_json())


def tied_rows(features: np.ndarray) -> int:
    """Rows equal to at least one other row: gallery items the frozen encoder cannot tell apart (a query whose
    answer is one of them can only tie), e.g. stereoisomers under ECFP4."""
    if len(features) == 0:
        return 0
    _, inverse, counts = np.unique(np.ascontiguousarray(features), axis=0, return_inverse=True, return_counts=True)
    return int((counts[inverse.ravel()] > 1).sum())


def query_frame(trial: TrialResult, data: TrialData) -> pd.DataFrame:
    """Rank of every query of a trial, for the bridge and the untrained heads, with the query's text or SMILES."""
    frames = []
    for system, runs in (("bridge", trial.runs), ("untrained", trial.baseline_runs)):
        for name, run in runs.items():
            items = data.texts if run.direction == "text_to_molecule" else data.molecules
            frame = pd.DataFrame(run.per_query())
            frame.insert(0, "system", system)
            frame.insert(1, "mode", name)
            frame["query"] = [items[i] for i in run.query_items]
            frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    if "group" in out:
        out["group"] = out["group"].astype("string")
    return out


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _fmt(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("value") is None or (isinstance(entry["value"], float) and math.isnan(entry["value"])):
        return "-"
    if entry.get("note"):  # no interval (too few groups)
        return f"{entry['value']:.{digits}f} (no CI)"
    return f"{entry['value']:.{digits}f} [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"


def format_table(result: dict) -> str:
    """Plain-text metric table: bridge and untrained baseline, 95% CI, n (and groups)."""
    split = result["split"]
    leak = f"  ** LEAKY {split['name']} split: molecules shared across sides **" if split.get("leaky") else ""
    lines = [
        f"dataset {result['dataset']['fingerprint']}: {result['dataset']['n_pairs']} pairs, "
        f"{result['dataset']['n_molecules']} molecules (dropped {result['dataset']['dropped']})",
        f"split {split['name']} seed {split['seed']} ({split['checksum']}): train {split['n_train']}, "
        f"val {split['n_val']}, test {split['n_test']}; evaluated on {split['evaluated']}{leak}",
        f"encoders {result['encoders']['molecule']['name']} + {result['encoders']['text']['name']} "
        f"({result['config']['text_field']}); timing {result['timing']}",
        "",
    ]
    header = f"{'mode':<26}{'metric':<13}{'bridge (95% CI)':<26}{'untrained heads':<26}{'n':>6}"
    lines += [header, "-" * len(header)]
    for mode in DIRECTIONS:
        metrics = result["metrics"].get(mode)
        if not metrics:
            continue
        for name, entry in metrics.items():
            n = f"{entry['n']}" + (f"/{entry['n_groups']}g" if "n_groups" in entry else "")
            lines.append(
                f"{mode:<26}{name:<13}{_fmt(entry, 1 if 'rank' in name else 3):<26}"
                f"{_fmt(result['baseline'].get(mode, {}).get(name), 1 if 'rank' in name else 3):<26}{n:>6}"
            )
    if result.get("cosine_baseline"):
        cos = result["cosine_baseline"]["text_to_molecule"]
        lines.append(f"\nplain cosine (shared space) text_to_molecule recall@1 {_fmt(cos['recall@1'])}")
    for mode, metrics in result.get("metrics_with_leaked_queries", {}).items():
        for name in ("recall@1", "mrr"):
            if name in metrics and name in result["metrics"].get(mode, {}):
                lines.append(
                    f"{mode} {name}: {_fmt(result['metrics'][mode][name])} without the leaked queries, "
                    f"{_fmt(metrics[name])} with them (n {metrics[name]['n']})"
                )
    for key, diff in result.get("comparisons", {}).items():
        interval = (
            f"({diff['note']})"
            if diff.get("note")
            else f"[{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}] p={diff['p_value']:.3f}"
        )
        lines.append(f"bridge - untrained {key}: {diff['difference']:+.3f} {interval}")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)
