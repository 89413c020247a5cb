"""The ChEMBL download path, driven by a fake client that serves recorded responses."""

import json

import pytest
from conftest import FIXTURES

from benchmark.core.errors import DownloadError
from benchmark.data import load_dataset
from benchmark.data.chembl import download_approved_mechanisms, download_to_cache, new_chembl_client, with_retries

RESPONSES = json.loads((FIXTURES / "chembl_responses.json").read_text())


class FakeQuery:
    def __init__(self, records):
        self.records = records

    def only(self, fields):
        return FakeQuery([{k: r.get(k) for k in fields} for r in self.records])

    def __iter__(self):
        return iter(self.records)


class FakeResource:
    """Mimics new_client.<resource>.filter(**lookups) with exact and `__in` lookups."""

    def __init__(self, records, failures=0):
        self.records, self.failures, self.calls = records, failures, []

    def filter(self, **lookups):
        self.calls.append(lookups)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("simulated network failure")
        out = self.records
        for key, value in lookups.items():
            if key.endswith("__in"):
                out = [r for r in out if r.get(key[:-4]) in set(value)]
            elif key.endswith("__gte"):
                out = [r for r in out if float(r.get(key[:-5])) >= float(value)]
            else:
                out = [r for r in out if float(r.get(key)) == float(value)]
        return FakeQuery(out)


class FakeClient:
    def __init__(self, failures=None):
        failures = failures or {}
        for name in ("molecule", "mechanism", "target"):
            setattr(self, name, FakeResource(RESPONSES[name], failures.get(name, 0)))


def test_download_builds_the_snapshot_schema():
    table, provenance = download_approved_mechanisms(FakeClient(), release="ChEMBL_33")
    assert provenance == {**provenance, "chembl_release": "ChEMBL_33", "n_molecules": 5, "n_mechanisms": 6, "n_rows": 6}
    aspirin = table[table["molecule_chembl_id"] == "CHEMBL25"].iloc[0]
    assert aspirin["target_pref_name"] == "Cyclooxygenase" and aspirin["target_type"] == "PROTEIN FAMILY"
    assert aspirin["canonical_smiles"] == "CC(=O)Oc1ccccc1C(=O)O"


def test_download_is_cached_and_loads_like_the_snapshot(tmp_path):
    client = FakeClient()
    path = download_to_cache(client, out_dir=tmp_path, release="ChEMBL_33")
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert provenance["chembl_release"] == "ChEMBL_33" and provenance["n_rows"] == 6
    calls = len(client.molecule.calls)
    assert download_to_cache(client, out_dir=tmp_path) == path and len(client.molecule.calls) == calls  # cached
    ds = load_dataset(path)
    # the antibody has no structure: dropped and counted; levodopa keeps both of its targets
    assert ds.dropped["missing_structure"] == 1
    assert ds.n_pairs == 5 and ds.n_molecules == 4
    assert ds.texts("text_rich")[list(ds.pairs["molecule_id"]).index("CHEMBL1003")].endswith(
        "Drug: CLAVULANATE POTASSIUM."
    )


def test_transient_failures_are_retried():
    sleeps = []
    client = FakeClient({"mechanism": 2})
    table, _ = download_approved_mechanisms(client, release="x", sleep=sleeps.append, base_delay=1.0)
    assert len(table) == 6
    assert sleeps == [1.0, 2.0]  # exponential backoff


def test_unreachable_endpoint_is_named():
    client = FakeClient({"target": 99})
    with pytest.raises(DownloadError, match=r"endpoint 'target' could not be reached after 3 attempts.*--data"):
        download_approved_mechanisms(client, release="x", retries=3, sleep=lambda s: None)


def test_release_lookup_retries_then_fails():
    def down():
        raise TimeoutError("no route")

    with pytest.raises(DownloadError, match="'status'"):
        download_approved_mechanisms(FakeClient(), release=down, retries=2, sleep=lambda s: None)


def test_with_retries_returns_first_success():
    attempts = iter([OSError("a"), 42])

    def call():
        value = next(attempts)
        if isinstance(value, Exception):
            raise value
        return value

    assert with_retries("x", call, sleep=lambda s: None) == 42


def test_real_client_without_network_gives_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name.startswith("chembl_webresource_client"):
            raise ConnectionError("Max retries exceeded with url: /chembl/api/data/spore")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    with pytest.raises(DownloadError, match="ChEMBL web services are unreachable.*--data"):
        new_chembl_client()


def test_a_failed_download_resumes_from_its_partial_cache(tmp_path):
    broken = FakeClient({"target": 99})  # molecules and mechanisms answer, targets never do
    with pytest.raises(DownloadError, match="'target'"):
        download_to_cache(broken, out_dir=tmp_path, release="ChEMBL_33", retries=1, sleep=lambda s: None, chunk=2)
    kept = sorted(p.name for p in (tmp_path / ".partial").iterdir())
    assert "molecules.json" in kept and sum(k.startswith("mechanism-") for k in kept) == 3  # 5 molecules, 2 per request
    healthy = FakeClient()
    path = download_to_cache(healthy, out_dir=tmp_path, release="ChEMBL_33", chunk=2)
    assert healthy.molecule.calls == [] and healthy.mechanism.calls == []  # nothing fetched twice
    assert len(healthy.target.calls) == 3 and not (tmp_path / ".partial").exists()
    assert len(load_dataset(path).pairs) == 5


def test_the_clinical_dataset_downloads_molecules_of_every_phase(tmp_path):
    from benchmark.data.chembl import download_mechanisms

    client = FakeClient()
    table, provenance = download_mechanisms(client, min_phase=1, release="ChEMBL_33")
    assert client.molecule.calls[0] == {"max_phase__gte": 1} and provenance["molecule_filter"] == {"max_phase__gte": 1}
    assert {"2.0", "3.0", "4.0"} <= set(table["max_phase"].dropna())
    approved, _ = download_approved_mechanisms(FakeClient(), release="ChEMBL_33")
    assert set(approved["max_phase"].dropna()) == {"4.0"} and len(table) > len(approved)
    path = download_to_cache(
        FakeClient(), out_dir=tmp_path, release="ChEMBL_33", min_phase=1, name="clinical_drug_mechanisms.parquet"
    )
    dataset = load_dataset(path)
    phases = dataset.molecule_phases()
    assert sorted(set(phases.tolist())) == [2.0, 3.0, 4.0]
    assert json.loads(path.with_suffix(".json").read_text())["chembl_release"] == "ChEMBL_33"
    from benchmark.data.datasets import card

    assert card("clinical", dataset)["release"] == "ChEMBL ChEMBL_33"
