"""Loss terms on hand-made batches."""

import torch
import torch.nn.functional as F

from benchmark.model.config import LossConfig
from benchmark.model.losses import BatchIds, info_nce, second_order, total_loss


def batch(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    mol = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    text = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    ids = BatchIds(torch.arange(n), torch.arange(n), torch.full((n,), -1))
    return mol, text, ids


def test_plain_infonce_is_symmetric_cross_entropy():
    mol, text, ids = batch()
    cfg = LossConfig(temperature=0.1)
    logits = text @ mol.T / 0.1
    target = torch.arange(6)
    expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    torch.testing.assert_close(info_nce(mol, text, ids, cfg), expected)


def test_margin_raises_the_loss():
    mol, text, ids = batch()
    assert info_nce(mol, text, ids, LossConfig(margin=0.2)) > info_nce(mol, text, ids, LossConfig())


def test_hard_negative_weighting():
    mol, text, ids = batch()
    plain = info_nce(mol, text, ids, LossConfig())
    # up-weighting the most similar negatives can only make the denominator larger
    assert info_nce(mol, text, ids, LossConfig(hard_negative_beta=5.0)) > plain
    # with all negatives equally similar the weights are all 1: plain InfoNCE
    eq_mol = torch.eye(4)
    eq_ids = BatchIds(torch.arange(4), torch.arange(4), torch.full((4,), -1))
    torch.testing.assert_close(
        info_nce(eq_mol, eq_mol, eq_ids, LossConfig(hard_negative_beta=5.0)),
        info_nce(eq_mol, eq_mol, eq_ids, LossConfig()),
    )


def test_same_target_negatives_are_up_weighted():
    mol, text, ids = batch()
    grouped = BatchIds(ids.mol, ids.text, torch.tensor([0, 0, 0, 1, 1, 2]))
    assert info_nce(mol, text, grouped, LossConfig(same_target_weight=3.0)) > info_nce(mol, text, grouped, LossConfig())


def test_in_batch_duplicates_are_not_negatives():
    mol, text, ids = batch()
    # rows 0 and 1 are the same molecule (with two texts): row 1's molecule must not be a negative for text 0
    mol = mol.clone()
    mol[1] = mol[0]
    dup = BatchIds(torch.tensor([0, 0, 2, 3, 4, 5]), ids.text, ids.group)
    naive = info_nce(mol, text, ids, LossConfig())
    aware = info_nce(mol, text, dup, LossConfig())
    assert aware < naive
    mask = dup.false_negatives()
    assert mask[0, 1] and mask[1, 0] and mask.sum() == 2


def test_second_order_losses():
    mol, text, _ = batch()
    u2u, u2c = second_order(mol, mol.clone(), LossConfig())
    assert abs(float(u2u)) < 1e-6 and abs(float(u2c)) < 1e-6  # identical geometry: nothing to align
    u2u, u2c = second_order(mol, text, LossConfig())
    assert u2u > 0 and u2c > 0


def test_total_loss_switches_terms():
    mol, text, ids = batch()
    _, parts = total_loss(mol, text, ids, LossConfig())
    assert set(parts) == {"infonce"}
    loss, parts = total_loss(mol, text, ids, LossConfig(infonce_weight=0.0, u2u_weight=1.0, u2c_weight=0.5))
    assert set(parts) == {"u2u", "u2c"}
    torch.testing.assert_close(loss, parts["u2u"] + parts["u2c"])
