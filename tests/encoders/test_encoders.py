"""Encoders: RDKit fingerprints, descriptors, transformers (tiny local BERT), MiniLM, TF-IDF,
the registry with its entry-point plugin, and the embedding cache."""

import errno
import json
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from benchmark.core.errors import EncoderError, UnknownNameError
from benchmark.core.registry import DuplicateNameError, Registry
from benchmark.encoders import build_encoder, encoder_registry
from benchmark.encoders import cache as cache_module
from benchmark.encoders import registry as registry_module
from benchmark.encoders.base import check_output
from benchmark.encoders.cache import EmbeddingCache
from benchmark.encoders.embed import embed

ASPIRIN, CAFFEINE, IBUPROFEN = "CC(=O)Oc1ccccc1C(=O)O", "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
MOLS = [ASPIRIN, CAFFEINE, IBUPROFEN]


def test_ecfp4_matches_rdkit_morgan_radius_2_2048():
    fp = build_encoder("ecfp4").encode(MOLS)
    expected = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048).GetFingerprintAsNumPy(
        Chem.MolFromSmiles(ASPIRIN)
    )
    assert fp.shape == (3, 2048) and fp.dtype == np.float32
    np.testing.assert_array_equal(fp[0], expected.astype(np.float32))
    assert 10 < fp[0].sum() < 100  # sparse bits


@pytest.mark.parametrize(
    "name,dim",
    [("ecfp6", 2048), ("fcfp4", 2048), ("morgan-count", 2048), ("maccs", 167), ("atom-pair", 2048), ("torsion", 2048)],
)
def test_fingerprint_family_shapes(name, dim):
    fp = build_encoder(name).encode(MOLS)
    assert fp.shape == (3, dim) and np.isfinite(fp).all() and (fp.sum(1) > 0).all()


def test_counts_and_features_differ_from_plain_bits():
    bits, counts, fcfp = (build_encoder(n).encode([IBUPROFEN]) for n in ("ecfp4", "morgan-count", "fcfp4"))
    assert counts.max() > 1 and ((counts > 0) == (bits > 0)).all()
    assert not np.array_equal(bits, fcfp)


def test_rdkit2d_is_standardised_on_training_molecules_only():
    enc = build_encoder("rdkit2d")
    with pytest.raises(EncoderError, match="fitted"):
        enc.encode(MOLS)
    enc.fit(MOLS)
    z = enc.encode(MOLS)
    assert z.shape[0] == 3 and z.shape[1] > 100
    varying = np.abs(z).sum(0) > 0
    np.testing.assert_allclose(z[:, varying].mean(0), 0, atol=1e-5)


def test_invalid_smiles_names_the_item():
    with pytest.raises(EncoderError, match="'C1CC'"):
        build_encoder("ecfp4").encode(["CCO", "C1CC"])


def test_tfidf_vocabulary_comes_from_training_texts_only():
    enc = build_encoder("tfidf")
    enc.fit(["kinase inhibitor", "receptor agonist"])
    out = enc.encode(["kinase inhibitor", "zebrafish"])
    assert out[0].sum() > 0 and out[1].sum() == 0  # a word seen only at test time has no column
    svd = build_encoder("tfidf-svd", svd_components=2)
    svd.fit(["kinase inhibitor", "receptor agonist", "channel blocker", "kinase blocker"])
    assert svd.encode(["kinase agonist"]).shape == (1, 2)


def test_minilm_offline_embeddings_are_normalised_and_semantic():
    enc = build_encoder("minilm")
    out = enc.encode(
        ["Dopamine D2 receptor antagonist", "Dopamine D2 receptor blocker", "Bacterial cell wall synthesis inhibitor"]
    )
    assert out.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert out[0] @ out[1] > out[0] @ out[2]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT built and saved locally: the transformers path without any hub."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + list("abcdefghijklmnopqrstuvwxyz0123456789()=#[]@+-/\\.")
        + ["cc", "co"]
    )
    (folder / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    import torch

    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_transformers_encoder_from_local_folder(tiny_bert):
    texts = ["kinase inhibitor", "a much longer mechanism sentence about receptors", "agonist"]
    mean = build_encoder("hf-text", model=str(tiny_bert), pooling="mean", batch_size=2)
    cls = build_encoder("hf-text", model=str(tiny_bert), pooling="cls")
    a, b = mean.encode(texts), cls.encode(texts)
    assert a.shape == b.shape == (3, 32) and not np.allclose(a, b)
    # length-sorted batching must return rows in input order: same vectors one at a time
    single = build_encoder("hf-text", model=str(tiny_bert), pooling="mean", batch_size=1)
    np.testing.assert_allclose(single.encode(texts), a, atol=1e-5)
    unsorted = build_encoder("hf-text", model=str(tiny_bert), pooling="mean", batch_size=2)
    unsorted.sort_by_length = False
    np.testing.assert_allclose(unsorted.encode(texts), a, atol=1e-5)


def test_chemberta_path_takes_a_local_smiles_model(tiny_bert):
    enc = build_encoder("chemberta", model=str(tiny_bert))
    assert enc.modality == "molecule" and enc.encode(MOLS).shape == (3, 32)


def test_unreachable_hub_model_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(EncoderError, match="cannot load hub model .*local folder"):
        build_encoder("pubmedbert").encode(["x"])


def test_registry_suggests_and_refuses_duplicates():
    with pytest.raises(UnknownNameError, match="Did you mean 'ecfp4'"):
        build_encoder("ecpf4")
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(DuplicateNameError, match="registered twice"):
        reg.register("a", 2, origin="plugin x")


def test_third_party_plugin_is_found_through_its_entry_point():
    reg = encoder_registry()
    assert "letter-counts" in reg, "install the example plugin: pip install ./tests/plugin_example"
    assert reg.origin("letter-counts") == "plugin benchmark-plugin-example"
    enc = build_encoder("letter-counts")
    out = enc.encode(["abc", "Aab"])
    assert out.shape == (2, 36) and out[0] @ out[1] > 0.5


def test_plugin_with_a_builtin_name_is_refused(monkeypatch):
    fake = EntryPoint(name="ecfp4", value="benchmark_plugin_example:LetterCounts", group="benchmark.encoders")
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [fake])
    registry_module.encoder_registry.cache_clear()
    try:
        with pytest.raises(DuplicateNameError, match="'ecfp4' is registered twice"):
            registry_module.encoder_registry()
    finally:
        registry_module.encoder_registry.cache_clear()


class Counting:
    """Counts how many items it was asked to encode."""

    modality = "text"

    def __init__(self, result=None):
        self.name, self.params, self.calls, self.result = "counting", {"v": 1}, 0, result

    def encode(self, items):
        self.calls += len(items)
        return self.result if self.result is not None else np.arange(len(items) * 3, dtype=np.float32).reshape(-1, 3)


def test_cache_encodes_once_and_recomputes_corrupt_files(tmp_path):
    cache = EmbeddingCache(tmp_path)
    enc = Counting()
    first = embed(enc, ["a", "b"], cache=cache)
    second = embed(enc, ["a", "b"], cache=cache)
    assert enc.calls == 2 and not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.matrix, second.matrix)
    path = cache.path(first.encoder_key, first.items_hash)
    assert json.loads(path.with_suffix(".json").read_text())["shape"] == [2, 3]
    assert not list(path.parent.glob("*.tmp"))  # atomic writes leave nothing behind
    path.write_bytes(path.read_bytes()[:-4])  # truncate: checksum no longer matches
    third = embed(enc, ["a", "b"], cache=cache)
    assert enc.calls == 4 and not third.from_cache
    embed(enc, ["a", "c"], cache=cache)  # other items, other entry: only the new item is encoded
    assert enc.calls == 5


class PerItem:
    """A frozen encoder whose row depends on the item alone; items longer than 5 characters are 'cut'."""

    modality = "text"

    def __init__(self):
        self.name, self.params, self.seen = "per-item", {"v": 1}, []

    def encode(self, items):
        self.seen += items
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in items], dtype=np.float32)

    def truncated(self, items):
        return [len(t) > 5 for t in items]


def test_the_cache_reencodes_only_new_or_changed_items(tmp_path):
    cache = EmbeddingCache(tmp_path)
    enc = PerItem()
    texts = [f"text {i}" for i in range(50)] + ["short"]
    first = embed(enc, texts, cache=cache)
    assert first.encoded == 51 and first.truncated == 50
    changed = texts[:10] + ["text 10, edited"] + texts[11:] + ["new"]  # one row changed, one added
    enc.seen = []
    second = embed(enc, changed, cache=cache)
    assert sorted(enc.seen) == ["new", "text 10, edited"] and second.encoded == 2 and not second.from_cache
    np.testing.assert_array_equal(second.matrix, PerItem().encode(changed))  # same as encoding all afresh
    assert second.truncated == 50  # 49 kept from the cache + the edited one; "short" and "new" are not cut
    enc.seen = []
    third = embed(enc, changed, cache=cache)  # the whole entry now: nothing encoded, the count kept
    assert third.from_cache and enc.seen == [] and third.truncated == 50
    reordered = embed(enc, list(reversed(changed)), cache=cache)
    assert enc.seen == [] and reordered.encoded == 0
    np.testing.assert_array_equal(reordered.matrix, second.matrix[::-1])


def test_fitted_encoders_are_never_assembled_from_rows_of_another_fit(tmp_path):
    from benchmark.encoders import build_encoder

    cache = EmbeddingCache(tmp_path)
    texts = ["kinase inhibitor", "receptor agonist", "channel blocker"]
    one = embed(build_encoder("tfidf"), texts, cache=cache, fit_items=texts[:2])
    two = embed(build_encoder("tfidf"), texts, cache=cache, fit_items=texts[1:])
    assert two.encoded == 3 and one.encoder_key != two.encoder_key


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((3, 2)), "shape"),
        (np.array([[np.nan, 1.0], [0, 0]]), "NaN"),
        ("text", "numeric"),
        (np.array([[1e30, 1.0], [0, 0]]), "values up to 1e\\+30 .* scale or normalise"),
    ],
)
def test_bad_encoder_output_is_explained(bad, match):
    with pytest.raises(EncoderError, match=match):
        check_output(Counting(), ["a", "b"], bad)


class Raising(Counting):
    def encode(self, items):
        raise RuntimeError("model weights corrupted")


def test_an_encoder_that_raises_is_named_and_nothing_is_cached(tmp_path):
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(
        EncoderError,
        match=r"encoder 'counting' \(test_encoders.Raising\) failed on 2 text items: "
        r"RuntimeError: model weights corrupted",
    ):
        embed(Raising(), ["a", "b"], cache=cache)
    assert not list(tmp_path.rglob("*.npy"))


def test_a_plugin_that_fails_to_import_fails_only_the_runs_that_ask_for_it(monkeypatch, caplog):
    broken = EntryPoint(name="broken-enc", value="no_such_plugin_module:Encoder", group="benchmark.encoders")
    good = EntryPoint(name="letter-counts", value="benchmark_plugin_example:LetterCounts", group="benchmark.encoders")
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [broken, good])
    registry_module.encoder_registry.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            reg = registry_module.encoder_registry()  # loading the registry does not fail
        assert "broken-enc" in caplog.text and "ModuleNotFoundError" in caplog.text
        assert "letter-counts" in reg and "broken-enc" not in reg
        assert registry_module.build_encoder("ecfp4").encode(["CCO"]).shape == (1, 2048)  # other runs go on
        with pytest.raises(EncoderError, match="'broken-enc' .*failed to import: ModuleNotFoundError"):
            registry_module.build_encoder("broken-enc")
        with pytest.raises(UnknownNameError, match="Did you mean"):
            registry_module.build_encoder("ecfp5")
        assert set(registry_module.broken_plugins()) == {"broken-enc"}
    finally:
        registry_module.encoder_registry.cache_clear()


def test_a_full_disk_while_caching_is_a_warning_and_the_embeddings_are_still_returned(tmp_path, monkeypatch, caplog):
    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module, "atomic_write_bytes", disk_full)
    enc = Counting()
    with caplog.at_level("WARNING"):
        out = embed(enc, ["a", "b"], cache=EmbeddingCache(tmp_path))
    assert out.matrix.shape == (2, 3) and enc.calls == 2
    assert "could not save" in caplog.text and "No space left on device" in caplog.text
    assert not list(tmp_path.rglob("*.npy"))  # nothing half-written that a later run could trust


def test_chemnet_is_a_pretrained_offline_molecule_encoder():
    from benchmark.encoders import build_encoder

    chemnet = build_encoder("chemnet")
    aspirin, aspirin_other_order, caffeine = (
        "CC(=O)Oc1ccccc1C(=O)O",
        "OC(=O)c1ccccc1OC(C)=O",
        "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    )
    x = embed(chemnet, [aspirin, aspirin_other_order, caffeine], cache=None).matrix
    assert x.shape == (3, 512) and np.isfinite(x).all()
    np.testing.assert_allclose(x[0], x[1], atol=1e-6)  # one molecule, two SMILES: ChemNet reads canonical SMILES
    assert np.abs(x[0] - x[2]).max() > 0.05  # a learned view: different molecules differ
    long_chain = "C" * 400
    assert chemnet.truncated([aspirin, long_chain]) == [False, True]  # ChemNet reads 349 symbols
    with pytest.raises(EncoderError, match="chemnet"):
        embed(chemnet, ["C1CC"], cache=None)


def test_wordllama_loads_offline_and_ranks_related_texts_closer():
    from benchmark.encoders import build_encoder

    wordllama = build_encoder("wordllama")
    texts = [
        "cyclooxygenase inhibitor, anti-inflammatory",
        "inhibitor of prostaglandin G/H synthase (cyclooxygenase)",
        "sodium channel blocker used as a local anaesthetic",
    ]
    x = embed(wordllama, texts, cache=None).matrix
    assert x.shape == (3, 256) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2]
    assert not any(wordllama.truncated(["word " * 50_000]))  # static embeddings read every token


def test_minilm_counts_the_texts_it_cuts(tmp_path):
    from benchmark.encoders import build_encoder

    texts = ["a short mechanism", "agonist " * 400]
    out = embed(build_encoder("minilm"), texts, cache=EmbeddingCache(tmp_path))
    assert out.truncated == 1
    assert embed(build_encoder("minilm"), texts, cache=EmbeddingCache(tmp_path)).truncated == 1  # from the cache
