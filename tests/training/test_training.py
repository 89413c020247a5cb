"""Bridge heads, training determinism and learning, on a tiny slice of the real data."""

import numpy as np
import pytest
import torch

from benchmark import train_and_evaluate
from benchmark.core.errors import DataError
from benchmark.data import ColumnMap
from benchmark.model.bridge import Bridge
from benchmark.model.config import BridgeConfig, LossConfig, OptimConfig, TrialConfig
from benchmark.splits.splitters import make_split
from benchmark.training.trial import prepare_trial_data, run_trial


@pytest.mark.parametrize("head", ["linear", "mlp", "memory_bank"])
def test_heads_give_unit_vectors_in_the_shared_space(head):
    bridge = Bridge(40, 12, BridgeConfig(head=head, dim=16, memory_heads=4, memory_tokens=3, memory_slots=5))
    m = bridge.embed_all(torch.randn(7, 40), "molecule")
    t = bridge.embed_all(torch.randn(5, 12), "text")
    assert m.shape == (7, 16) and t.shape == (5, 16)
    torch.testing.assert_close(m.norm(dim=1), torch.ones(7))
    if head == "memory_bank":
        shared = [n for n, _ in bridge.named_parameters() if n.startswith("projector.")]
        assert any("queries" in n for n in shared)  # one memory bank for both modalities


def test_memory_bank_dim_must_split_into_heads():
    with pytest.raises(ValueError, match="divisible"):
        BridgeConfig(head="memory_bank", dim=30, memory_heads=4)


def quick(**loss):
    return TrialConfig(
        text_encoder={"name": "tfidf"},
        optim=OptimConfig(epochs=15, batch_size=64),
        bridge=BridgeConfig(dim=32),
        loss=LossConfig(**loss),
    )


@pytest.fixture(scope="module")
def tiny_setup(tiny_dataset):
    split = make_split(tiny_dataset, "random", seed=0, fractions=(0.6, 0.2, 0.2))
    return split, prepare_trial_data(tiny_dataset, quick(), split)


def test_same_seed_same_metrics_other_seed_other_weights(tiny_setup):
    split, data = tiny_setup
    a = run_trial(quick(), data, split, side="val", n_boot=50)
    b = run_trial(quick(), data, split, side="val", n_boot=50)
    assert a.metrics == b.metrics and a.history == b.history
    c = run_trial(quick().model_copy(update={"seed": 1}), data, split, side="val", n_boot=50)
    assert c.history != a.history


def test_training_learns_the_training_pairs(tiny_setup):
    split, data = tiny_setup
    result = run_trial(quick(), data, split, side="train", n_boot=50)
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    trained = result.metrics["text_to_molecule"]["recall@1"]["value"]
    untrained = result.baseline["text_to_molecule"]["recall@1"]["value"]
    assert trained > 0.6 and untrained < 0.3


@pytest.mark.parametrize(
    "loss", [dict(margin=0.2, hard_negative_beta=2.0, same_target_weight=2.0), dict(u2u_weight=1.0, u2c_weight=1.0)]
)
def test_every_loss_combination_trains(tiny_setup, loss):
    split, data = tiny_setup
    result = run_trial(quick(**loss), data, split, side="val", n_boot=50)
    assert np.isfinite(result.history[-1]["loss"]) and result.history[-1]["loss"] < result.history[0]["loss"]


def test_validation_reports_never_use_the_test_side(tiny_setup):
    split, data = tiny_setup
    reports = []
    run_trial(quick(), data, split, side="val", n_boot=50, eval_every=5, reporter=reports.append)
    assert len(reports) == 15
    with_val = [r for r in reports if "val_recall@1" in r]
    assert [r["epoch"] for r in with_val] == [5, 10, 15]


def test_shared_space_encoders_get_a_plain_cosine_baseline(tiny_dataset):
    split = make_split(tiny_dataset, "random", seed=0, fractions=(0.6, 0.2, 0.2))
    cfg = TrialConfig(mol_encoder={"name": "minilm-smiles"}, optim=OptimConfig(epochs=2, batch_size=64))
    data = prepare_trial_data(tiny_dataset, cfg, split)
    assert data.shared_space
    result = run_trial(cfg, data, split, side="val", n_boot=50)
    assert result.cosine_baseline is not None and "text_to_molecule" in result.cosine_baseline


@pytest.mark.parametrize(
    "loss", [{}, {"margin": 0.1}, {"hard_negative_beta": 2.0}, {"u2u_weight": 1.0, "u2c_weight": 0.5}]
)
def test_fast_and_reference_implementations_agree(tiny_setup, loss):
    split, data = tiny_setup
    fast = run_trial(quick(**loss), data, split, side="val", n_boot=50)
    reference = run_trial(
        quick(**loss).model_copy(update={"implementation": "reference"}), data, split, side="val", n_boot=50
    )
    for a, b in zip(fast.history, reference.history, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * max(1.0, abs(b["loss"]))
    n = fast.metrics["text_to_molecule"]["recall@1"]["n"]
    for mode in ("text_to_molecule", "molecule_to_text"):
        for metric in ("recall@1", "mrr"):
            assert abs(fast.metrics[mode][metric]["value"] - reference.metrics[mode][metric]["value"]) <= 1.0 / n


@pytest.mark.parametrize(
    ("same", "message"), [("text", "is trivial: .* by construction"), ("smiles", "1 molecules are too few to split")]
)
def test_trivial_retrieval_is_refused_before_training(tmp_path, tiny_frame, same, message):
    """Every text identical: Recall@1 would be 1.0 by construction, so the run is refused before anything is
    trained. Every molecule identical is refused earlier, by the split."""
    frame = tiny_frame.rename(columns={"canonical_smiles": "smiles", "mechanism_of_action": "text"})[
        ["smiles", "text"]
    ].dropna()
    frame[same] = frame[same].iloc[0]
    frame["fold"] = ["train", "train", "train", "val", "test"] * (len(frame) // 5) + ["train"] * (len(frame) % 5)
    path = tmp_path / "pairs.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        train_and_evaluate(
            quick(),
            data=path,
            columns=ColumnMap(smiles="smiles", text="text"),
            split="published",
            split_column="fold",
            n_boot=10,
        )
