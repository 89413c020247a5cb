"""Loading, cleaning and text fields, on the real snapshot and on small hand-made files."""

import pandas as pd
import pytest

from benchmark.core.errors import ConfigError, DataError, UnknownNameError
from benchmark.data import ColumnMap, load_dataset
from benchmark.data.text_fields import parse_template, render
from benchmark.splits import make_split


def test_snapshot_counts_match_its_readme(snapshot):
    # README of the snapshot: 3,477 rows, 2,712 with a structure (the rest are dropped, counted)
    assert snapshot.n_input_rows == 3477
    assert snapshot.dropped["missing_structure"] == 3477 - 2712
    assert snapshot.dropped["invalid_smiles"] == 0
    kept = snapshot.n_pairs + sum(snapshot.dropped.values())
    assert kept == snapshot.n_input_rows
    # salt forms collapse onto one structure key, and no (structure, target) pair is left twice
    assert not snapshot.pairs.duplicated(["structure_key", "target_id"]).any()
    assert snapshot.salts_stripped > 0
    assert snapshot.n_molecules == snapshot.pairs["structure_key"].nunique()


def test_salt_forms_share_a_structure_key(snapshot):
    clav = snapshot.pairs[snapshot.pairs["molecule_id"] == "CHEMBL1003"].iloc[0]
    assert clav["structure_key"] == "O=C([O-])[C@H]1/C(=C/CO)O[C@@H]2CC(=O)N21"  # potassium removed


def test_fingerprint_is_stable_and_content_sensitive(snapshot_path, tmp_path):
    a = load_dataset(snapshot_path)
    frame = pd.read_csv(snapshot_path, dtype=str)
    frame.sample(frac=1.0, random_state=3).to_csv(tmp_path / "shuffled.csv", index=False)
    assert load_dataset(tmp_path / "shuffled.csv").fingerprint == a.fingerprint  # row order does not matter
    frame.loc[frame["molecule_chembl_id"] == "CHEMBL25", "mechanism_of_action"] = "Something else"
    frame.to_csv(tmp_path / "edited.csv", index=False)
    assert load_dataset(tmp_path / "edited.csv").fingerprint != a.fingerprint


def test_text_rich_has_mechanism_target_action_and_name(snapshot):
    texts = snapshot.texts("text_rich")
    row = snapshot.pairs.index[snapshot.pairs["molecule_id"] == "CHEMBL25"][0]
    assert texts[row] == "Cyclooxygenase inhibitor. Target: Cyclooxygenase. Action: inhibitor. Drug: ASPIRIN."
    assert snapshot.texts("mechanism")[row] == "Cyclooxygenase inhibitor"


def test_template_skips_segments_with_empty_fields():
    template = parse_template("{mechanism}.|Drug: {drug_name}.")
    assert render(template, {"mechanism": "X inhibitor", "drug_name": None}) == "X inhibitor."
    assert render(template, {"mechanism": "X inhibitor", "drug_name": "ABC"}) == "X inhibitor. Drug: ABC."
    with pytest.raises(ConfigError, match="unknown field"):
        parse_template("{mechanism} {dose}")


def write(tmp_path, rows, name="pairs.csv", **kw):
    path = tmp_path / name
    frame = pd.DataFrame(rows)
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return path


def test_bring_your_own_counts_every_drop(tmp_path):
    rows = [
        {"cid": "1", "SMILES": "CCO", "description": "an alcohol", "family": "a"},
        {"cid": "2", "SMILES": "CC(=O)O.[Na+]", "description": "an acid salt", "family": "a"},
        {"cid": "3", "SMILES": "not a smiles", "description": "broken", "family": "b"},
        {"cid": "4", "SMILES": "", "description": "no structure", "family": "b"},
        {"cid": "5", "SMILES": "c1ccccc1", "description": "   ", "family": "b"},
        {"cid": "6", "SMILES": "OCC", "description": "an alcohol", "family": "a"},  # same molecule as 1, same group
    ]
    cols = ColumnMap(smiles="SMILES", text="description", id="cid", group="family")
    ds = load_dataset(write(tmp_path, rows, "pairs.tsv"), cols)
    assert ds.dropped == {
        "missing_structure": 1,
        "missing_text": 1,
        "too_large": 0,
        "rdkit_timeout": 0,
        "invalid_smiles": 1,
        "duplicate_pair": 1,
    }
    assert ds.n_pairs == 2 and ds.salts_stripped == 1
    assert "3: not a smiles" in ds.invalid_smiles_examples
    assert set(ds.pairs["structure_key"]) == {"CCO", "CC(=O)O"}


def test_parquet_and_guessed_columns_without_groups(tmp_path):
    rows = [{"SMILES": s, "text": f"molecule {i}"} for i, s in enumerate(["CCO", "CCN", "CCC"])]
    ds = load_dataset(write(tmp_path, rows, "pairs.parquet"))
    assert ds.n_pairs == 3 and not ds.has_groups and ds.groups is None
    assert set(ds.pairs["molecule_id"]) == {"row0", "row1", "row2"}


def test_missing_column_is_named(tmp_path):
    path = write(tmp_path, [{"smiles": "CCO", "text": "x"}])
    with pytest.raises(DataError, match=r"column\(s\) \['caption'\] not found.*available columns"):
        load_dataset(path, ColumnMap(smiles="smiles", text="caption"))


def test_unreadable_and_absent_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")
    bad = tmp_path / "pairs.xlsx"
    bad.write_text("x")
    with pytest.raises(DataError, match="unsupported suffix"):
        load_dataset(bad)
    undetectable = write(tmp_path, [{"a": "CCO", "b": "x"}], "odd.csv")
    with pytest.raises(DataError, match="--smiles-column"):
        load_dataset(undetectable)


def test_all_rows_unusable_is_an_error(tmp_path):
    path = write(tmp_path, [{"smiles": "xx", "text": "a"}, {"smiles": "", "text": "b"}])
    with pytest.raises(DataError, match="no usable pairs"):
        load_dataset(path)


def test_unknown_text_field_suggests(tiny_dataset):
    with pytest.raises(UnknownNameError, match="Did you mean 'text_rich'"):
        tiny_dataset.texts("text_ricj")


def test_default_data_comes_from_environment(tmp_path, monkeypatch):
    path = write(tmp_path, [{"smiles": "CCO", "text": "x"}, {"smiles": "CCN", "text": "y"}])
    monkeypatch.setenv("BENCHMARK_DATA", str(path))
    assert load_dataset().source == str(path)


def test_pairs_without_a_group_still_train_and_evaluate(tmp_path, tiny_frame):
    from benchmark import TrialConfig, train_and_evaluate

    frame = tiny_frame.copy()
    frame.loc[frame.index[:5], "target_chembl_id"] = None  # a few pairs with no known target
    path = tmp_path / "partial_groups.csv"
    frame.to_csv(path, index=False)
    ds = load_dataset(path)
    assert ds.has_groups and sum(g is None for g in ds.groups) == 5
    result = train_and_evaluate(
        TrialConfig(text_encoder={"name": "tfidf"}, optim={"epochs": 2}),
        data=ds,
        side="train",
        fractions=(0.6, 0.2, 0.2),
        n_boot=20,
    )
    queries = result.per_query_frame()
    grouped = queries[queries["mode"] == "text_to_molecule_grouped"]
    assert len(grouped) > 0 and grouped["group"].notna().all()  # pairs without a target join no group
    assert len(queries[queries["mode"] == "text_to_molecule"]) > len(grouped)


def test_an_id_naming_two_structures_is_refused(tmp_path):
    rows = [
        {"id": "A", "smiles": "CCO", "text": "x"},
        {"id": "A", "smiles": "CCN", "text": "y"},
        {"id": "B", "smiles": "CCC", "text": "z"},
    ]
    with pytest.raises(DataError, match=r"1 molecule id\(s\) name more than one structure, e.g. 'A' \(rows"):
        load_dataset(write(tmp_path, rows), ColumnMap(smiles="smiles", text="text", id="id"))


def test_heavy_atoms_are_counted_from_the_text_as_rdkit_counts_them(snapshot_path):
    """The size guard reads SMILES without RDKit; on every real structure it agrees with RDKit."""
    import pandas as pd
    from rdkit import Chem

    from benchmark.data.chem import heavy_atom_count

    smiles = pd.read_csv(snapshot_path, dtype=str)["canonical_smiles"].dropna().unique()
    for smi in smiles:
        mol = Chem.MolFromSmiles(smi)
        if mol is not None:
            assert heavy_atom_count(smi) == mol.GetNumHeavyAtoms(), smi
    assert heavy_atom_count("[2H]C([2H])([H])Cl") == 2 and heavy_atom_count("[Hg+2].[Br-]") == 2


def test_hostile_structures_are_dropped_before_rdkit_or_bounded_in_time():
    from benchmark.data.chem import structure_keys

    chain = "C" * 20000  # RDKit segfaults writing this one (MolToSmiles)
    keys, _, reasons = structure_keys(["CCO", chain, "C" * 700, "not smiles"])
    assert reasons == [None, "too_large", None, "invalid_smiles"] and keys[2] == "C" * 700  # guarded, in time
    # allowed by size but slower than the limit: the child is killed and the structure dropped
    keys, _, reasons = structure_keys(["C" * 15000, "CCN"], max_heavy_atoms=100000, seconds=0.05)
    assert reasons == ["rdkit_timeout", None] and keys[1] == "CCN"


def test_a_run_on_data_with_a_huge_smiles_finishes_and_counts_the_drop(tmp_path, tiny_frame):
    """A 20,000-atom and a 15,000-atom chain in the data: the scaffold split trains, both drops counted."""
    import json
    import subprocess
    import sys

    import pandas as pd

    hostile = tiny_frame.head(2).copy()
    hostile["molecule_chembl_id"] = ["CHEMBL_HUGE1", "CHEMBL_HUGE2"]
    hostile["canonical_smiles"] = ["C" * 20000, "C" * 15000]
    path = tmp_path / "hostile.csv"
    pd.concat([tiny_frame, hostile]).to_csv(path, index=False)
    out = tmp_path / "result.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "train",
            "--data",
            str(path),
            "--split",
            "scaffold",
            "--text-encoder",
            "tfidf",
            "--epochs",
            "3",
            "--bootstrap",
            "50",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dataset = json.loads(out.read_text())["dataset"]
    assert dataset["dropped"]["too_large"] == 2
    assert "above 1000 heavy atoms" in done.stderr


def test_bad_bytes_are_reported_by_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"smiles,text\nCCO,ethanol binds\nCCN,bad \xff byte\n")
    with pytest.raises(DataError) as info:
        load_dataset(path, columns=ColumnMap(smiles="smiles", text="text"))
    assert "line 3 is not UTF-8" in str(info.value) and "save the file as UTF-8" in str(info.value)


def test_a_header_that_names_a_column_twice_is_refused(tmp_path, tiny_frame):
    frame = tiny_frame.copy()
    frame.insert(len(frame.columns), "mechanism_of_action_dup", "something else entirely")
    path = tmp_path / "dup.csv"
    frame.to_csv(path, index=False)
    path.write_text(path.read_text().replace("mechanism_of_action_dup", "mechanism_of_action", 1))
    with pytest.raises(DataError, match="names column 'mechanism_of_action' twice"):
        load_dataset(path)


def test_one_scaffold_for_the_whole_dataset_is_named_as_the_cause(tmp_path, tiny_frame):
    frame = tiny_frame.copy()
    acyclic = {
        m: f"{'C' * (i % 9 + 1)}{'O' * (i // 9 % 4)}N" for i, m in enumerate(frame["molecule_chembl_id"].unique())
    }
    frame["canonical_smiles"] = frame["molecule_chembl_id"].map(acyclic)  # one structure per id, none with a ring
    path = tmp_path / "acyclic.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="largest Bemis-Murcko scaffold, '' \\(acyclic molecules.*1 scaffold in all"):
        make_split(load_dataset(path), "scaffold", seed=0)
