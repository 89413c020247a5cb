"""Datasets as documented entries, the prospective split, published splits and the text gallery."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SNAPSHOT

from benchmark.core.errors import ConfigError, DataError
from benchmark.data import datasets, load_dataset
from benchmark.evaluation.metrics import evaluate_retrieval
from benchmark.splits.splitters import make_split

CLINICAL = SNAPSHOT.parent / "clinical_drug_mechanisms.csv"


@pytest.fixture(scope="module")
def phased(tmp_path_factory):
    """~200 real rows of the clinical snapshot: approved and investigational molecules with their phases."""
    frame = pd.read_csv(CLINICAL, dtype=str)
    frame = frame[frame["has_structure"] == "True"]
    part = pd.concat(
        [
            frame[frame["max_phase_chembl28"] == p].head(n)
            for p, n in (("4.0", 120), ("3.0", 30), ("2.0", 40), ("1.0", 15))
        ]
    )
    path = tmp_path_factory.mktemp("phased") / "phased.csv"
    part.to_csv(path, index=False)
    return load_dataset(path)


def test_both_registered_datasets_have_cards():
    for name, phases in (("approved", {"4"}), ("clinical", {"1", "2", "3", "4"})):
        dataset = datasets.load(name, allow_download=False)
        card = datasets.card(name, dataset)
        assert card["fingerprint"] == dataset.fingerprint and "CC BY-SA 3.0" in card["licence"]
        assert "Gaulton" in card["citation"] and card["counts"]["pairs"] == dataset.n_pairs
        assert set(card["counts"]["molecules_by_phase"]) >= phases
        assert sum(card["counts"]["dropped"].values()) > 0  # biologics without structure are counted
        text = datasets.format_card(card)
        assert name in text and card["fingerprint"] in text
    clinical = datasets.load("clinical", allow_download=False)
    assert clinical.n_pairs > datasets.load("approved", allow_download=False).n_pairs * 1.5


def test_prospective_split_tests_investigational_molecules_only(phased):
    split = make_split(phased, "prospective", seed=0)
    phases = phased.molecule_phases()
    mols = {side: np.unique(phased.mol_index[split.rows(side)]) for side in ("train", "val", "test")}
    assert (phases[mols["train"]] == 4).all() and (phases[mols["val"]] == 4).all()
    assert ((phases[mols["test"]] >= 1) & (phases[mols["test"]] < 4)).all()
    assert not set(mols["test"]) & (set(mols["train"]) | set(mols["val"]))  # structure-disjoint
    assert not split.leaky and split.text_gallery == "dataset"
    details = split.details
    assert sum(details["test_molecules_by_phase"].values()) == len(mols["test"]) == details["test_molecules"]
    from benchmark.data.chem import murcko_scaffold

    train_scaffolds = {murcko_scaffold(phased.molecules[m]) for m in mols["train"]}
    shared = sum(murcko_scaffold(phased.molecules[m]) in train_scaffolds for m in mols["test"])
    assert details["test_molecules_sharing_a_train_scaffold"] == shared
    again = make_split(phased, "prospective", seed=0)
    assert again.checksum == split.checksum and make_split(phased, "prospective", seed=1).checksum != split.checksum


def test_prospective_split_needs_phases(tiny_frame, tmp_path):
    tiny_frame.drop(columns=["max_phase_chembl28"]).to_csv(tmp_path / "no_phase.csv", index=False)
    with pytest.raises(DataError, match="clinical phase"):
        make_split(load_dataset(tmp_path / "no_phase.csv"), "prospective")
    approved_only = tiny_frame.assign(max_phase_chembl28="4.0")
    approved_only.to_csv(tmp_path / "approved.csv", index=False)
    with pytest.raises(DataError, match="investigational"):
        make_split(load_dataset(tmp_path / "approved.csv"), "prospective")


def test_molecule_to_text_against_a_larger_gallery():
    rng = np.random.default_rng(0)
    mol = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(6, 8)), dtype=torch.float32), dim=1)
    text = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(9, 8)), dtype=torch.float32), dim=1)
    text[7] = text[0]  # a distractor identical to a positive text: a tie, half a rank
    mol_idx, text_idx = np.arange(6), np.arange(6)
    own = evaluate_retrieval(mol, text, mol_idx, text_idx)["molecule_to_text"]
    same = evaluate_retrieval(mol, text, mol_idx, text_idx, text_gallery=np.arange(6))["molecule_to_text"]
    np.testing.assert_array_equal(own.ranks, same.ranks)
    wide = evaluate_retrieval(mol, text, mol_idx, text_idx, text_gallery=np.arange(9))["molecule_to_text"]
    assert (wide.ranks >= own.ranks).all() and (wide.gallery_size == 9).all()
    scores = (mol @ text.T).numpy()
    expected = [
        1
        + (scores[i, np.arange(9) != i] > scores[i, i]).sum()
        + 0.5 * (scores[i, np.arange(9) != i] == scores[i, i]).sum()
        for i in range(6)
    ]
    np.testing.assert_allclose(wide.ranks, expected)
    with pytest.raises(ValueError, match="not in the text gallery"):
        evaluate_retrieval(mol, text, mol_idx, text_idx, text_gallery=np.arange(3))


def write_published(tiny_frame: pd.DataFrame, path, labels) -> pd.DataFrame:
    frame = tiny_frame.copy()
    frame["fold"] = labels(frame)
    frame.to_csv(path, index=False)
    return frame


def test_published_split_runs_exactly_the_given_sides(tiny_frame, tmp_path):
    def by_molecule(f: pd.DataFrame) -> pd.Series:  # whole molecules per side; labels in any case
        return f["molecule_chembl_id"].map(lambda m: ("train", "validation", "TEST")[int(m.replace("CHEMBL", "")) % 3])

    frame = write_published(tiny_frame, tmp_path / "pub.csv", by_molecule)
    dataset = load_dataset(tmp_path / "pub.csv", split_column="fold")
    split = make_split(dataset, "published")
    labels = dataset.split_labels
    assert list(split.train) == list(np.flatnonzero(labels == "train"))
    assert list(split.val) == list(np.flatnonzero(labels == "validation"))
    assert list(split.test) == list(np.flatnonzero(labels == "test"))
    assert not split.leaky and len(frame) >= dataset.n_pairs


def test_published_split_with_unknown_values_or_shared_structures(tiny_frame, tmp_path):
    write_published(
        tiny_frame, tmp_path / "bad.csv", lambda f: ["train", "dev", "test"] * (len(f) // 3) + ["train"] * (len(f) % 3)
    )
    with pytest.raises(DataError, match="'dev'"):
        make_split(load_dataset(tmp_path / "bad.csv", split_column="fold"), "published")
    write_published(
        tiny_frame, tmp_path / "leak.csv", lambda f: ["train", "test"] * (len(f) // 2) + ["train"] * (len(f) % 2)
    )
    split = make_split(load_dataset(tmp_path / "leak.csv", split_column="fold"), "published")
    assert split.leaky and split.details["structures_on_two_sides"]["train-test"] > 0
    with pytest.raises(ConfigError, match="split column"):
        make_split(load_dataset(tmp_path / "leak.csv"), "published")


def test_train_on_clinical_prospective_tests_investigational_pairs():
    from benchmark.api import train_and_evaluate
    from benchmark.model.config import TrialConfig

    config = TrialConfig.model_validate(
        {"text_encoder": {"name": "tfidf"}, "text_field": "text_rich_no_drug", "optim": {"epochs": 3}}
    )
    result = train_and_evaluate(config, dataset="clinical", split="prospective", n_boot=50)
    payload = result.to_json()
    assert payload["split"]["name"] == "prospective" and payload["split"]["n_test"] > 1000
    m2t = payload["metrics"]["molecule_to_text"]["recall@1"]
    assert m2t["ci_low"] <= m2t["value"] <= m2t["ci_high"]
    n_texts = len(datasets.load("clinical", allow_download=False).text_index("text_rich_no_drug")[0])
    assert f"all {n_texts} distinct texts" in " ".join(payload["notes"])
    assert payload["galleries"]["molecule_to_text"]["size"] == n_texts


def test_data_pointing_at_a_folder_says_so(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        load_dataset(tmp_path)


def test_stereoisomers_collide_under_ecfp4_but_not_with_chirality():
    from benchmark.data.chem import fingerprint_collisions

    l_alanine, d_alanine, glycine = "C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O", "NCC(=O)O"
    assert fingerprint_collisions([l_alanine, d_alanine, glycine]) == 2
    assert fingerprint_collisions([l_alanine, d_alanine, glycine], chirality=True) == 0
    assert fingerprint_collisions([glycine, "not a smiles"]) == 0


def test_the_dataset_card_counts_fingerprint_collisions():
    from benchmark.data.chem import fingerprint_collisions
    from benchmark.encoders import build_encoder

    dataset = datasets.load("approved", allow_download=False)
    card = datasets.card("approved", dataset)
    counts = card["fingerprint_collisions"]
    assert counts["ecfp4"] > counts["ecfp4-chiral"] > 0  # stereoisomers among approved drugs
    bits = build_encoder("ecfp4").encode(list(dataset.molecules))  # the encoder the suite uses agrees
    _, inverse, n = np.unique(bits, axis=0, return_inverse=True, return_counts=True)
    assert counts["ecfp4"] == int((n[inverse.ravel()] > 1).sum()) == fingerprint_collisions(list(dataset.molecules))
    assert f"{counts['ecfp4']} molecules share their ECFP4 bits" in datasets.format_card(card)


def test_train_with_ecfp4_chiral_counts_fewer_tied_gallery_molecules():
    from benchmark.api import train_and_evaluate
    from benchmark.model.config import TrialConfig

    galleries = {}
    for name in ("ecfp4", "ecfp4-chiral"):
        config = TrialConfig.model_validate(
            {"mol_encoder": {"name": name}, "text_encoder": {"name": "tfidf"}, "optim": {"epochs": 1}}
        )
        result = train_and_evaluate(config, dataset="approved", split="random", fractions=(0.3, 0.1, 0.6), n_boot=20)
        galleries[name] = result.to_json()["galleries"]["text_to_molecule"]
        notes = " ".join(result.notes)
        if name == "ecfp4":
            assert "can only tie" in notes and "ecfp4-chiral" in notes
    assert galleries["ecfp4"]["items"] == galleries["ecfp4-chiral"]["items"]  # the same test molecules
    assert galleries["ecfp4"]["tied_items"] > galleries["ecfp4-chiral"]["tied_items"]


def test_dropping_leaked_queries_of_a_published_split(tiny_frame, tmp_path):
    from benchmark.splits.splitters import shared_structures, without_leaks

    write_published(  # pair-level labels: molecules with several pairs land on two sides
        tiny_frame, tmp_path / "leak.csv", lambda f: ["train", "val", "test"] * (len(f) // 3) + ["train"] * (len(f) % 3)
    )
    dataset = load_dataset(tmp_path / "leak.csv", split_column="fold")
    leaky = make_split(dataset, "published")
    clean = without_leaks(dataset, leaky)
    assert (
        leaky.leaky
        and not clean.leaky
        and not any(shared_structures(dataset, [clean.train, clean.val, clean.test]).values())
    )
    np.testing.assert_array_equal(clean.train, leaky.train)  # the bridge trains on the same pairs
    dropped = clean.details["leaked_pairs_dropped"]
    assert dropped["test"] > 0 and len(clean.test) + dropped["test"] == len(leaky.test)
    assert set(clean.test) <= set(leaky.test) and clean.checksum != leaky.checksum
    assert clean.details["leaky_split_checksum"] == leaky.checksum
    assert without_leaks(dataset, clean) is clean  # nothing left to drop


def test_train_with_drop_leaked_reports_both_numbers(capsys):
    from benchmark.cli.main import main

    assert (
        main(
            ["train", "--split", "pair", "--drop-leaked", "--text-encoder", "tfidf", "--epochs", "2"]
            + ["--bootstrap", "20"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "leaked queries dropped:" in out
    line = next(line for line in out.splitlines() if line.startswith("text_to_molecule recall@1:"))
    assert "without the leaked queries" in line and "with them" in line
    from benchmark.api import train_and_evaluate
    from benchmark.model.config import TrialConfig

    config = TrialConfig.model_validate({"text_encoder": {"name": "tfidf"}, "optim": {"epochs": 2}})
    result = train_and_evaluate(config, split="pair", drop_leaked=True, n_boot=20).to_json()
    clean, all_queries = (
        result["metrics"]["molecule_to_text"],
        result["metrics_with_leaked_queries"]["molecule_to_text"],
    )
    assert clean["recall@1"]["n"] < all_queries["recall@1"]["n"]
    assert result["split"]["details"]["leaked_pairs_dropped"]["test"] > 0 and not result["split"]["leaky"]
