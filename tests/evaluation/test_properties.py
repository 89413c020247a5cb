"""Properties that must hold for any input (hypothesis), and security rules checked on the source."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.data.cleaning import clean_pairs
from benchmark.evaluation.bootstrap import MIN_GROUPS, bootstrap_mean
from benchmark.splits.splitters import make_split

POOL = [
    "CCO",
    "CCN",
    "CCC",
    "c1ccccc1",
    "c1ccncc1",
    "C1CCCCC1",
    "CC(=O)O",
    "c1ccc2ccccc2c1",
    "C1CCNCC1",
    "CCOC(=O)C",
    "c1ccoc1",
    "c1ccsc1",
    "CC(C)O",
    "OC1CCCC1",
    "c1ccc(O)cc1",
    "NC1CCCCC1",
    "c1cnc2ccccc2c1",
    "CCCCCC",
    "C1CC1",
    "c1ccc(-c2ccccc2)cc1",
    "O=C1CCCN1",
    "c1cc[nH]c1",
    "CC(C)(C)O",
    "C1COCCN1",
]


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(0, 1), min_size=1, max_size=200), seed=st.integers(0, 1000), grouped=st.booleans())
def test_a_confidence_interval_contains_its_estimate(values, seed, grouped):
    groups = np.arange(len(values)) % 7 if grouped else None
    estimate = bootstrap_mean(values, groups=groups, n_boot=200, seed=seed)
    if grouped and len(values) < MIN_GROUPS:  # too few groups for an interval: none is claimed, and it says why
        assert np.isnan(estimate.ci_low) and np.isnan(estimate.ci_high) and "no 95% CI" in estimate.note
        return
    assert estimate.ci_low - 1e-9 <= estimate.value <= estimate.ci_high + 1e-9


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    molecules=st.lists(st.sampled_from(POOL), min_size=12, max_size=60),
    targets=st.integers(1, 6),
    seed=st.integers(0, 50),
    name=st.sampled_from(["random", "scaffold", "pair"]),
)
def test_splits_are_disjoint_and_cover_the_data(molecules, targets, seed, name):
    frame = pd.DataFrame(
        {
            "molecule_id": [f"m{POOL.index(m)}" for m in molecules],
            "smiles": molecules,
            "mechanism": [f"mechanism {i % 7}" for i in range(len(molecules))],
            "target_id": [f"T{i % targets}" for i in range(len(molecules))],
            "target_name": None,
            "action_type": None,
            "drug_name": None,
        }
    )
    dataset = clean_pairs(frame.astype("string"), source="generated", has_groups=True)
    if dataset.n_molecules < 10:
        return
    try:
        split = make_split(dataset, name, seed=seed)
    except Exception as exc:  # too few molecules for a side is a clear, expected refusal
        assert "empty" in str(exc)
        return
    rows = np.concatenate([split.train, split.val, split.test])
    assert sorted(rows.tolist()) == list(range(dataset.n_pairs))
    if name != "pair":
        keys = [set(dataset.pairs.iloc[split.rows(s)]["structure_key"]) for s in ("train", "val", "test")]
        assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


SOURCE = Path(__file__).resolve().parents[2] / "benchmark"


def _code() -> dict[Path, str]:
    return {p: p.read_text() for p in SOURCE.rglob("*.py")}


def test_no_pickle_no_unsafe_yaml_no_unsafe_torch_load():
    for path, text in _code().items():
        assert not re.search(r"^\s*import pickle|^\s*from pickle|cloudpickle\.load", text, re.M), path
        assert "allow_pickle=True" not in text, path
        assert not re.search(r"yaml\.load\(", text), f"{path}: use yaml.safe_load"
        for call in re.findall(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call, f"{path}: torch.load without weights_only=True"


def test_plugins_come_only_from_entry_points():
    # configuration never names an import path: no importlib.import_module / __import__ on config values
    for path, text in _code().items():
        assert "import_module(" not in text and "__import__(" not in text, path
