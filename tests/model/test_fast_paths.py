"""The fast training path computes what the plain one does: each kernel against its autograd
reference (values and gradients, and torch.autograd.gradcheck in float64), the per-epoch layouts
against per-batch recomputation, and a whole trial against the reference implementation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.model.bridge import unit_rows
from benchmark.model.config import LossConfig
from benchmark.model.losses import BatchIds, InBatchDuplicates, _SymmetricInfoNCE, fused_info_nce, info_nce
from benchmark.model.sparse import EpochBags, SparseRows, bag_product


def _ids_with_duplicates(n, seed):
    g = torch.Generator().manual_seed(seed)
    mol = torch.randint(0, n // 2, (n,), generator=g)  # molecules with several texts
    text = torch.randint(0, n, (n,), generator=g)
    return BatchIds(mol, text, torch.full((n,), -1))


def _unit(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)


@pytest.mark.parametrize(
    ("temperature", "margin", "beta", "same_target"),
    [
        (0.07, 0.0, 0.0, 1.0),
        (0.1, 0.2, 0.0, 1.0),
        (0.015, 0.0, 0.0, 1.0),
        (0.02, 0.3, 0.0, 1.0),
        (0.07, 0.0, 2.0, 1.0),
        (0.05, 0.1, 1.5, 2.5),
        (0.07, 0.0, 0.0, 3.0),
    ],
)
def test_fused_info_nce_matches_autograd_reference(temperature, margin, beta, same_target):
    # 0.015 and (0.02, 0.3) exceed the one-exponential spread; hard negatives take per-direction logsumexps
    ids = _ids_with_duplicates(24, seed=1)
    ids.group = torch.randint(0, 4, (24,), generator=torch.Generator().manual_seed(9))
    assert ids.false_negatives().any() and ids.same_target().any()
    cfg = LossConfig(temperature=temperature, margin=margin, hard_negative_beta=beta, same_target_weight=same_target)
    results = []
    for fn in (info_nce, fused_info_nce):
        mol = _unit(24, 16, 2, torch.float64).requires_grad_()
        text = _unit(24, 16, 3, torch.float64).requires_grad_()
        loss = fn(mol, text, ids, cfg)
        loss.backward()
        results.append((loss.detach(), mol.grad, text.grad))
    for ref, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("temperature", "beta"), [(0.07, 0.0), (0.01, 0.0)])
def test_fused_info_nce_gradcheck(temperature, beta):
    # hard-negative weights are detached by design (as in info_nce), so their gradient is not the
    # numerical one: those configurations are checked against info_nce above instead
    ids = _ids_with_duplicates(10, seed=4)
    cfg = LossConfig(temperature=temperature, margin=0.1, hard_negative_beta=beta)
    mol = _unit(10, 6, 5, torch.float64).requires_grad_()
    text = _unit(10, 6, 6, torch.float64).requires_grad_()
    weighting = (ids, cfg) if beta else None
    assert torch.autograd.gradcheck(
        lambda t, m: _SymmetricInfoNCE.apply(
            t, m, ids.false_negatives(), 1 / temperature, 0.1 / temperature, weighting
        ),
        (text, mol),
    )


def test_in_batch_duplicate_lists_and_dense_masks_give_the_same_fused_loss():
    ids = _ids_with_duplicates(16, seed=2)
    rows, cols = torch.nonzero(ids.false_negatives(), as_tuple=True)
    listed = BatchIds(ids.mol, ids.text, ids.group, (rows, cols))
    for cfg in (LossConfig(), LossConfig(hard_negative_beta=1.0)):
        torch.testing.assert_close(
            fused_info_nce(_unit(16, 4, 0), _unit(16, 4, 1), listed, cfg),
            fused_info_nce(_unit(16, 4, 0), _unit(16, 4, 1), ids, cfg),
        )


def test_unit_rows_matches_normalize_and_gradcheck():
    x = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(unit_rows(x), F.normalize(x, dim=-1))
    assert torch.autograd.gradcheck(unit_rows, (x,))


def _fingerprints(n, bits, seed, counts=False):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, bits)) < 0.08).astype(np.float32)
    x[3] = 0  # a molecule with no on-bit
    return x * rng.integers(1, 4, x.shape) if counts else x


@pytest.mark.parametrize("counts", [False, True])
def test_epoch_bags_equal_dense_products_and_gradients(counts):
    features = _fingerprints(30, 64, seed=0, counts=counts)
    pair_rows = torch.as_tensor(np.random.default_rng(1).integers(0, 30, 71))  # molecules repeat across pairs
    bags = EpochBags(SparseRows.from_dense(features), pair_rows)
    order = torch.randperm(71, generator=torch.Generator().manual_seed(2))
    dense = torch.as_tensor(features, dtype=torch.float64)
    weight = torch.randn(64, 5, dtype=torch.float64)
    batches = bags.epoch(order, 16)
    assert len(batches) == 5
    for b, batch in enumerate(batches):
        rows = pair_rows[order[b * 16 : (b + 1) * 16]]
        w_fast = weight.clone().float().requires_grad_()
        w_ref = weight.clone().float().requires_grad_()
        out_fast, out_ref = bag_product(w_fast, batch), dense[rows].float() @ w_ref
        torch.testing.assert_close(out_fast, out_ref, rtol=1e-5, atol=1e-5)
        grad = torch.randn_like(out_ref)
        out_fast.backward(grad)
        out_ref.backward(grad)
        torch.testing.assert_close(w_fast.grad, w_ref.grad, rtol=1e-5, atol=1e-5)


def test_bag_product_gradcheck():
    features = _fingerprints(12, 20, seed=3, counts=True)
    pair_rows = torch.arange(12)
    batch = EpochBags(SparseRows.from_dense(features), pair_rows).epoch(torch.arange(12), 12)[0]
    weight = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    batch.weights = batch.weights.double()
    batch.column_weights = batch.column_weights.double()
    assert torch.autograd.gradcheck(lambda w: bag_product(w, batch), (weight,))


def test_in_batch_duplicates_equal_the_dense_false_negative_masks():
    rng = np.random.default_rng(0)
    mol, text = rng.integers(0, 120, 400), rng.integers(0, 300, 400)
    duplicates = InBatchDuplicates(mol, text)
    order = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    found = 0
    for b, (rows, cols) in enumerate(duplicates.epoch(order, 64)):
        batch = order[b * 64 : (b + 1) * 64]
        mask = BatchIds(
            torch.as_tensor(mol)[batch], torch.as_tensor(text)[batch], torch.zeros(len(batch))
        ).false_negatives()
        listed = torch.zeros_like(mask)
        listed[rows, cols] = True
        assert torch.equal(listed, mask)
        found += len(rows)
    assert found > 50


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1025, 4099])
def test_bootstrap_multiplicities_equal_plain_resampling(n):
    """Means by matrix product and medians by cumulative counts equal v[idx].mean() / np.median(v[idx])."""
    from benchmark.evaluation.bootstrap import _resample_chunks, resample_statistics

    rng = np.random.default_rng(n)
    ranks = rng.integers(2, 80, n) / 2.0
    hits = (ranks <= 5).astype(float)
    stats = resample_statistics({"rank": ranks, "hit": hits}, n_boot=300, seed=3, medians=("rank",))
    plain_median, plain_mean = [], []
    for _, idx in _resample_chunks(n, 300, np.random.default_rng(3)):
        plain_median += list(np.median(ranks[idx], axis=1))
        plain_mean += list(hits[idx].mean(axis=1))
    np.testing.assert_array_equal(stats["rank"], plain_median)
    np.testing.assert_allclose(stats["hit"], plain_mean, rtol=1e-12)


def test_group_bootstrap_equals_plain_group_resampling():
    from benchmark.evaluation.bootstrap import _resample_chunks, resample_statistics

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 500)
    values = rng.random(500)
    stats = resample_statistics({"v": values}, groups=groups, n_boot=200, seed=5)["v"]
    labels, codes = np.unique(groups, return_inverse=True)
    sums, sizes = np.bincount(codes, weights=values), np.bincount(codes)
    plain = [
        sums[row].sum() / sizes[row].sum()
        for _, idx in _resample_chunks(len(labels), 200, np.random.default_rng(5))
        for row in idx
    ]
    np.testing.assert_allclose(stats, plain, rtol=1e-12)


@pytest.mark.parametrize(("row_chunk", "col_chunk"), [(7, 5), (64, 32), (4096, 4096)])
def test_one_pass_ranking_equals_two_reference_passes(row_chunk, col_chunk):
    """Both directions from one blocked pass equal `rank_of_best_positive` run per direction,
    with several positives per query, exact ties (duplicate embeddings) and shuffled ids."""
    from benchmark.evaluation.metrics import positive_matrix, rank_both_directions, rank_of_best_positive

    rng = np.random.default_rng(0)
    n_t, n_m = 90, 60
    texts = F.normalize(torch.randn(n_t, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    mols = F.normalize(torch.randn(n_m, 8, generator=torch.Generator().manual_seed(2)), dim=1)
    mols[10] = mols[11]  # identical molecules: exact ties
    texts[5] = texts[6] = texts[7]
    text_pos = np.concatenate([np.arange(n_t), rng.integers(0, n_t, 40)])
    mol_pos = np.concatenate([rng.permutation(np.resize(np.arange(n_m), n_t)), rng.integers(0, n_m, 40)])
    t_ranks, m_ranks = rank_both_directions(texts, mols, text_pos, mol_pos, row_chunk=row_chunk, col_chunk=col_chunk)
    ref_t = rank_of_best_positive(texts, mols, positive_matrix(text_pos, mol_pos, n_t, n_m))
    ref_m = rank_of_best_positive(mols, texts, positive_matrix(mol_pos, text_pos, n_m, n_t))
    np.testing.assert_array_equal(t_ranks, ref_t)
    np.testing.assert_array_equal(m_ranks, ref_m)
    assert (ref_t % 1 == 0.5).any() or (ref_m % 1 == 0.5).any()  # ties were exercised
