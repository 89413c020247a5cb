"""The trainable graph encoder (ACML's asymmetric design): featurisation, batching, invariance, training."""

import numpy as np
import pytest
import torch

from benchmark.core.errors import ConfigError
from benchmark.encoders.graphs import (
    ATOM_FEATURES,
    ELEMENTS,
    GraphEncoderConfig,
    GraphHead,
    GraphTensors,
    cached_graphs,
    featurize,
)
from benchmark.model.config import TrialConfig

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CAFFEINE = "Cn1c(=O)c2c(ncn2C)n(C)c1=O"


def test_featurisation_counts_atoms_and_bonds_of_known_molecules():
    graphs = featurize([ASPIRIN, CAFFEINE, "c1ccccc1", "[Na+].[Cl-]", "[U]"])
    assert graphs.counts(0) == (13, 13) and graphs.counts(1) == (14, 15) and graphs.counts(2) == (6, 6)
    assert graphs.counts(3) == (2, 0)  # two ions, no bond
    assert graphs.x.shape == (13 + 14 + 6 + 2 + 1, len(ATOM_FEATURES))
    benzene = graphs.x[graphs.node_ptr[2] : graphs.node_ptr[3]]
    assert (benzene[:, 0] == ELEMENTS.index("C")).all() and (benzene[:, 3] == 1).all() and (benzene[:, 6] == 1).all()
    ions = graphs.x[graphs.node_ptr[3] : graphs.node_ptr[4]]
    assert ions[:, 0].tolist() == [ELEMENTS.index("Na"), ELEMENTS.index("Cl")] and ions[:, 2].tolist() == [3, 1]
    assert graphs.x[-1, 0] == len(ELEMENTS)  # uranium: the "other" element code
    # every bond in both directions, inside its own molecule
    src, dst = graphs.edge_index
    assert len(src) == 2 * (13 + 15 + 6)
    for i in range(3):
        lo, hi = graphs.node_ptr[i], graphs.node_ptr[i + 1]
        part = slice(graphs.edge_ptr[i], graphs.edge_ptr[i + 1])
        assert ((src[part] >= lo) & (src[part] < hi) & (dst[part] >= lo) & (dst[part] < hi)).all()


def test_batches_equal_pytorch_geometric_batching():
    """The offset-arithmetic batch of any molecules (repeats, any order) equals PyG's Batch.from_data_list."""
    from torch_geometric.data import Batch, Data

    smiles = [ASPIRIN, CAFFEINE, "c1ccccc1", "CCO", "C1CC1N"]
    graphs = featurize(smiles)
    tensors = GraphTensors(graphs, torch.device("cpu"))
    pick = torch.tensor([3, 0, 4, 1])
    x, edge_index, edge_attr, graph = tensors.batch(pick)
    data = []
    for i in pick.tolist():
        nodes = slice(graphs.node_ptr[i], graphs.node_ptr[i + 1])
        edges = slice(graphs.edge_ptr[i], graphs.edge_ptr[i + 1])
        data.append(
            Data(
                x=torch.as_tensor(graphs.x[nodes]),
                edge_index=torch.as_tensor(graphs.edge_index[:, edges] - graphs.node_ptr[i]),
                edge_attr=torch.as_tensor(graphs.edge_attr[edges]),
            )
        )
    reference = Batch.from_data_list(data)
    assert torch.equal(x, reference.x) and torch.equal(edge_index, reference.edge_index)
    assert torch.equal(edge_attr, reference.edge_attr) and torch.equal(graph, reference.batch)


@pytest.mark.parametrize("pooling", ["mean", "sum", "max"])
def test_an_atom_permuted_smiles_gives_the_same_embedding(pooling):
    """The same molecule written two ways (atoms in another order) embeds identically (float tolerance)."""
    variants = [ASPIRIN, "OC(=O)c1ccccc1OC(C)=O", "c1cc(OC(=O)C)c(C(O)=O)cc1"]
    graphs = featurize(variants)
    assert not np.array_equal(graphs.x[:13], graphs.x[13:26])  # really another atom order
    torch.manual_seed(0)
    head = GraphHead(
        GraphEncoderConfig(pooling=pooling), torch.nn.Linear(64, 16), GraphTensors(graphs, torch.device("cpu"))
    )
    head.eval()
    out = head(torch.tensor([[0.0], [1.0], [2.0]]))
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0], out[2], atol=1e-5, rtol=1e-5)


def test_graphs_are_cached_as_checksummed_arrays(tmp_path):
    from benchmark.encoders.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path)
    first = cached_graphs([ASPIRIN, CAFFEINE], cache)
    [path] = list((tmp_path / "graphs").glob("*.npz"))
    np.load(path, allow_pickle=False)  # plain arrays
    again = cached_graphs([ASPIRIN, CAFFEINE], cache)
    assert np.array_equal(first.x, again.x) and np.array_equal(first.edge_index, again.edge_index)
    path.write_bytes(path.read_bytes()[:-10])  # truncated: detected, featurised again
    repaired = cached_graphs([ASPIRIN, CAFFEINE], cache)
    assert np.array_equal(first.edge_attr, repaired.edge_attr)


def test_graph_encoder_parameters_are_validated():
    with pytest.raises(ValueError, match="align_weight > 0 needs align_to"):
        TrialConfig.model_validate({"mol_encoder": {"name": "gin", "params": {"align_weight": 0.5}}})
    with pytest.raises(ValueError, match="layers"):
        TrialConfig.model_validate({"mol_encoder": {"name": "gin", "params": {"layers": 0}}})
    with pytest.raises(ValueError, match="pooling"):
        TrialConfig.model_validate({"mol_encoder": {"name": "gin", "params": {"pooling": "attention"}}})


def _gin_config(epochs: int, **params) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "mol_encoder": {"name": "gin", "params": {"hidden": 64, **params}},
            "text_encoder": {"name": "tfidf"},
            "bridge": {"dim": 64},
            "optim": {"epochs": epochs, "batch_size": 64, "lr": 3e-3},
        }
    )


@pytest.fixture(scope="module")
def small_split(snapshot):
    from benchmark.splits.splitters import make_split

    return make_split(snapshot, "random", 0, (0.8, 0.1, 0.1))


@pytest.mark.slow
def test_training_beats_the_untrained_encoder_and_the_text_side_stays_frozen(snapshot, small_split, tmp_path):
    from benchmark.encoders.cache import EmbeddingCache
    from benchmark.training.trial import prepare_trial_data, run_trial

    cfg = _gin_config(epochs=8)
    data = prepare_trial_data(snapshot, cfg, small_split, cache=EmbeddingCache(tmp_path))
    assert data.graphs is not None and data.mol_features.shape == (len(snapshot.molecules), 1)
    text_before = data.text_features.copy()
    result = run_trial(cfg, data, small_split, side="val", n_boot=50, keep_models=True)
    bridge, untrained = result.extras["bridge"], result.extras["untrained_bridge"]
    trained_mrr = result.metrics["text_to_molecule"]["mrr"]["value"]
    assert trained_mrr > result.baseline["text_to_molecule"]["mrr"]["value"] + 0.05
    assert result.comparisons["text_to_molecule/mrr"]["ci_low"] > 0
    # the graph encoder learned; the text side is frozen features: no text-encoder parameter exists in the model
    # and its features are unchanged
    before = dict(untrained.mol_head.encoder.named_parameters())
    moved = [n for n, p in bridge.mol_head.encoder.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) > 10
    assert np.array_equal(data.text_features, text_before) and isinstance(data.text_features, np.ndarray)
    trainable = {n.split(".")[0] for n, p in bridge.named_parameters() if p.requires_grad}
    assert trainable == {"mol_head", "text_head"}


@pytest.mark.slow
def test_alignment_to_a_frozen_fingerprint_view_adds_its_term(snapshot, small_split, tmp_path):
    from benchmark.encoders.cache import EmbeddingCache
    from benchmark.training.trial import prepare_trial_data, run_trial

    cfg = _gin_config(epochs=2, align_to="ecfp4", align_weight=0.5)
    data = prepare_trial_data(snapshot, cfg, small_split, cache=EmbeddingCache(tmp_path))
    assert data.view_features.shape == (len(snapshot.molecules), 2048)
    result = run_trial(cfg, data, small_split, side="val", n_boot=20)
    assert all(record["align"] > 0 for record in result.history)
    with pytest.raises(ConfigError, match="frozen molecule encoder"):
        prepare_trial_data(
            snapshot, _gin_config(1, align_to="gin", align_weight=1.0), small_split, cache=EmbeddingCache(tmp_path)
        )


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")),
    ],
)
def test_a_graph_trial_trains_on_each_device(snapshot, small_split, tmp_path, device):
    from benchmark.encoders.cache import EmbeddingCache
    from benchmark.training.trial import prepare_trial_data, run_trial

    cfg = _gin_config(epochs=1)
    data = prepare_trial_data(snapshot, cfg, small_split, cache=EmbeddingCache(tmp_path))
    result = run_trial(cfg, data, small_split, side="val", n_boot=20, device=device)
    assert result.device.startswith(device) and np.isfinite(result.history[-1]["loss"])
