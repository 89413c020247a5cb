"""Ranks with several correct answers, ties, grouped retrieval and bootstrap CIs."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.evaluation.bootstrap import bootstrap_mean, bootstrap_median, paired_bootstrap
from benchmark.evaluation.metrics import evaluate_retrieval


def unit(rows):
    t = torch.tensor(rows, dtype=torch.float32)
    return t / t.norm(dim=1, keepdim=True)


def test_hand_computed_ranks():
    mols = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    texts = unit([[1, 0.1, 0], [1, 0.9, 0], [0, 0, 1]])  # text 1 sits closer to molecule 0 than to its own
    runs = evaluate_retrieval(mols, texts, np.array([0, 1, 2]), np.array([0, 1, 2]))
    np.testing.assert_array_equal(runs["text_to_molecule"].ranks, [1, 2, 1])
    summary = runs["text_to_molecule"].summary(n_boot=200)
    assert summary["recall@1"]["value"] == pytest.approx(2 / 3)
    assert summary["mrr"]["value"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert summary["recall@1"]["n"] == 3


def test_several_correct_answers_count_the_best_one():
    mols = unit([[1, 0], [0, 1], [0.7, 0.7]])
    texts = unit([[0, 1]])
    # the text is paired with molecules 0 and 1; molecule 1 is its best match
    runs = evaluate_retrieval(mols, texts, np.array([0, 1]), np.array([0, 0]))
    assert runs["text_to_molecule"].ranks.tolist() == [1.0]
    assert runs["text_to_molecule"].gallery_size.tolist() == [2]  # molecule 2 is not in the evaluated pairs


def test_identical_items_are_one_gallery_entry_and_ties_are_mid_ranked():
    mols = unit([[1, 0], [1, 0], [1, 0]])  # three distinct molecules with identical embeddings
    texts = unit([[1, 0], [0, 1], [1, 1]])
    runs = evaluate_retrieval(mols, texts, np.array([0, 1, 2, 0]), np.array([0, 1, 2, 0]))  # pair (0, 0) twice
    t2m = runs["text_to_molecule"]
    assert len(t2m.ranks) == 3 and t2m.gallery_size[0] == 3  # duplicate pair merged
    np.testing.assert_array_equal(t2m.ranks, [2.0, 2.0, 2.0])  # 1 + 0 higher + 2 tied / 2


def test_perfect_embeddings_score_one():
    emb = torch.eye(5)
    runs = evaluate_retrieval(emb, emb, np.arange(5), np.arange(5), np.array(["a"] * 5))
    for run in runs.values():
        assert (run.ranks == 1).all()
    assert set(runs) == {"text_to_molecule", "molecule_to_text", "text_to_molecule_grouped", "molecule_to_text_grouped"}


def test_grouped_ranks_only_within_targets_with_three_molecules():
    g = torch.Generator().manual_seed(0)
    mols, texts = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    groups = np.array(["T1", "T1", "T1", "T2", "T2", None, "T3"], dtype=object)
    runs = evaluate_retrieval(mols, texts, np.arange(7), np.arange(7), groups)
    grouped = runs["text_to_molecule_grouped"]
    assert set(grouped.query_groups) == {"T1"}  # T2 has 2 molecules, T3 one
    assert grouped.gallery_size.tolist() == [3, 3, 3] and (grouped.ranks <= 3).all()
    assert grouped.summary(n_boot=100)["recall@1"]["n_groups"] == 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 25), seed=st.integers(0, 10_000))
def test_rank_properties(n, seed):
    g = torch.Generator().manual_seed(seed)
    mols, texts = torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)
    run = evaluate_retrieval(mols, texts, np.arange(n), np.arange(n))["text_to_molecule"]
    curve = run.recall_curve(max_k=n)
    assert all(a <= b for a, b in zip(curve, curve[1:])) and curve[-1] == 1.0  # Recall@k monotone, reaches 1
    mrr = float(np.mean(1 / run.ranks))
    assert 0 < mrr <= 1
    perm = torch.randperm(n, generator=g)  # permuting the gallery changes no rank
    inverse = torch.argsort(perm)
    permuted = evaluate_retrieval(mols[perm], texts, inverse.numpy(), np.arange(n))["text_to_molecule"]
    np.testing.assert_array_equal(permuted.ranks, run.ranks)


def test_bootstrap_ci_contains_the_estimate_and_is_seeded():
    values = np.random.default_rng(0).random(300) < 0.3
    a = bootstrap_mean(values, seed=1)
    assert a.ci_low <= a.value <= a.ci_high and a.n == 300
    assert a == bootstrap_mean(values, seed=1)
    continuous = np.random.default_rng(0).random(300)
    assert bootstrap_mean(continuous, seed=1) != bootstrap_mean(continuous, seed=2)
    assert 0.2 < a.ci_low < a.ci_high < 0.4
    med = bootstrap_median(np.arange(1, 101), seed=0)
    assert med.value == 50.5 and med.ci_low <= 50.5 <= med.ci_high


def test_group_bootstrap_resamples_whole_groups():
    # values constant within groups: queries are not independent, so the group CI must be wider
    groups = np.repeat(np.arange(10), 20)
    values = (groups % 2).astype(float)
    per_query = bootstrap_mean(values, seed=0)
    per_group = bootstrap_mean(values, groups=groups, seed=0)
    assert per_group.value == per_query.value == 0.5
    assert (per_group.ci_high - per_group.ci_low) > 2 * (per_query.ci_high - per_query.ci_low)
    assert per_group.n_groups == 10


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.5).astype(float)
    same = paired_bootstrap(a, a)
    assert same.difference == 0 and same.p_value == 1.0
    better = np.maximum(a, (rng.random(400) < 0.3))
    diff = paired_bootstrap(better, a)
    assert diff.difference > 0 and diff.ci_low > 0 and diff.p_value < 0.01
    with pytest.raises(ValueError, match="same queries"):
        paired_bootstrap(a, a[:10])


def test_grouped_retrieval_over_too_few_groups_claims_no_interval_and_no_p_value():
    """One or two targets: a cluster bootstrap gave a zero-width '95% CI' and p = 0.000; now neither is claimed."""
    from benchmark.evaluation.bootstrap import MIN_GROUPS, paired_bootstrap
    from benchmark.evaluation.metrics import summarize

    rng = np.random.default_rng(0)
    a, b = rng.random(60), rng.random(60) * 0.5
    for count in (1, 2, MIN_GROUPS - 1):
        groups = np.arange(60) % count
        summary = summarize({"recall@1": a}, groups, n_boot=200, seed=0)["recall@1"]
        assert summary["value"] == pytest.approx(a.mean()) and summary["n_groups"] == count
        assert np.isnan(summary["ci_low"]) and np.isnan(summary["ci_high"]) and "no 95% CI" in summary["note"]
        diff = paired_bootstrap(a, b, groups=groups, n_boot=200, seed=0)
        assert np.isnan(diff.p_value) and diff.note
    enough = summarize({"recall@1": a}, np.arange(60) % MIN_GROUPS, n_boot=200, seed=0)["recall@1"]
    assert enough["ci_low"] < enough["value"] < enough["ci_high"] and "note" not in enough
    assert paired_bootstrap(a, b, groups=np.arange(60) % MIN_GROUPS, n_boot=200, seed=0).p_value < 0.05
