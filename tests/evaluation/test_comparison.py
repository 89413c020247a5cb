"""Method comparison across folds, checked against independent calculations."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.evaluation.comparison import (
    FRIEDMAN,
    PARAMETRIC,
    WILCOXON,
    Comparison,
    compare_systems,
    mean_ci,
    metric_bounds,
)


def frame(values: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(
        [(s, f"r0f{i}", v) for s, vs in values.items() for i, v in enumerate(vs)], columns=["system", "fold", "value"]
    )


def systems(
    shifts: dict[str, tuple[float, float]], n: int = 25, seed: int = 0, fold_sd: float = 0.03
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fold_effect = rng.normal(0.3, fold_sd, n)  # folds differ in difficulty: the design blocks on them
    return {s: fold_effect + shift + rng.normal(0, sd, n) for s, (shift, sd) in shifts.items()}


def rm_anova_f(wide: np.ndarray) -> float:
    """Repeated-measures ANOVA F by the textbook sums of squares (folds x systems)."""
    n, k = wide.shape
    grand = wide.mean()
    ss_systems = n * ((wide.mean(axis=0) - grand) ** 2).sum()
    ss_folds = k * ((wide.mean(axis=1) - grand) ** 2).sum()
    ss_error = ((wide - grand) ** 2).sum() - ss_systems - ss_folds
    return (ss_systems / (k - 1)) / (ss_error / ((k - 1) * (n - 1)))


def test_two_systems_tukey_equals_the_paired_t_test():
    values = systems({"a": (0.0, 0.01), "b": (0.006, 0.01)})
    result = compare_systems(frame(values))
    t = stats.ttest_rel(values["a"], values["b"])
    assert result.test == PARAMETRIC
    assert result.pair("a", "b").p_adj == pytest.approx(t.pvalue, rel=1e-5)
    assert result.omnibus["F"] == pytest.approx(t.statistic**2, rel=1e-9)
    d = values["a"] - values["b"]
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))  # k = 2: Tukey CI = paired t CI
    assert result.pair("a", "b").ci_low == pytest.approx(d.mean() - half, rel=1e-6)


def test_anova_and_tukey_on_four_systems_against_hand_computed_statistics():
    values = systems({"a": (0.0, 0.01), "b": (0.02, 0.01), "c": (0.1, 0.012), "d": (0.1, 0.011)})
    result = compare_systems(frame(values), "recall@1")
    wide = np.column_stack([values[s] for s in "abcd"])
    assert result.omnibus["F"] == pytest.approx(rm_anova_f(wide), rel=1e-9)
    n, k = wide.shape
    resid = wide - wide.mean(axis=0) - wide.mean(axis=1, keepdims=True) + wide.mean()
    mse = (resid**2).sum() / ((k - 1) * (n - 1))
    for a, b in itertools.combinations("abcd", 2):
        q = abs(values[a].mean() - values[b].mean()) / np.sqrt(mse / n)
        assert result.pair(a, b).p_adj == pytest.approx(stats.studentized_range.sf(q, k, (k - 1) * (n - 1)), abs=1e-9)
    assert not result.pair("c", "d").significant and result.pair("a", "c").significant
    assert result.letters["c"] == result.letters["d"] and not set(result.letters["a"]) & set(result.letters["c"])
    assert result.systems[:2] in (["c", "d"], ["d", "c"])  # best mean first
    again = Comparison.from_dict(result.as_dict())
    assert again.pairs == result.pairs and again.letters == result.letters


def test_unequal_variances_switch_to_friedman_and_conover():
    values = systems({"a": (0.0, 0.001), "b": (0.05, 0.05), "c": (0.1, 0.002)}, seed=3, fold_sd=0.0)
    result = compare_systems(frame(values))
    assert result.test == FRIEDMAN and "variance ratio" in result.reason and result.checks["variance_ratio"] > 9
    shared = systems({"a": (0.0, 0.001), "b": (0.05, 0.05), "c": (0.1, 0.002)}, seed=3)  # a fold effect hides the
    assert compare_systems(frame(shared)).test == FRIEDMAN  # ratio; Levene still rejects
    ranks = np.column_stack([values[s] for s in "abc"])
    ranks = np.apply_along_axis(stats.rankdata, 1, ranks)
    n, k = ranks.shape
    chi2 = 12 * n / (k * (k + 1)) * ((ranks.mean(axis=0) - (k + 1) / 2) ** 2).sum()
    assert result.omnibus["statistic"] == pytest.approx(chi2, rel=1e-9)
    assert result.pair("a", "c").significant and result.p_matrix["a"]["c"] == result.p_matrix["c"]["a"]


def test_two_systems_with_unequal_variances_use_wilcoxon():
    values = systems({"a": (0.0, 0.001), "b": (0.05, 0.03)}, n=10, fold_sd=0.0)
    result = compare_systems(frame(values))
    assert result.test == WILCOXON
    assert result.pair("a", "b").p_adj == pytest.approx(stats.wilcoxon(values["a"], values["b"]).pvalue)


def test_too_few_folds_or_systems_are_refused():
    with pytest.raises(ValueError, match="two systems"):
        compare_systems(frame({"a": np.arange(5.0)}))
    with pytest.raises(ValueError, match="three folds"):
        compare_systems(frame({"a": np.arange(2.0), "b": np.arange(2.0)}))


@pytest.mark.parametrize("values", [[0.0, 0.0, 0.004, 0.0, 0.001], [1.0, 0.998, 1.0, 0.99, 1.0]])
def test_across_fold_intervals_of_a_recall_stay_inside_zero_one(values):
    arr = np.asarray(values)
    half = stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))
    assert arr.mean() - half < 0.0 or arr.mean() + half > 1.0  # the plain t interval leaves the range here
    m = mean_ci(values, metric_bounds("text_to_molecule/recall@1"))
    assert 0.0 <= m["ci_low"] <= m["mean"] <= m["ci_high"] <= 1.0
    # the side away from the bound is the t interval's own
    inner = m["ci_high"] if arr.mean() < 0.5 else m["ci_low"]
    assert inner == pytest.approx(arr.mean() + half if arr.mean() < 0.5 else arr.mean() - half)
    # the comparison's per-system summaries use the metric's range too
    other = [v + 0.01 if arr.mean() < 0.5 else v - 0.01 for v in values]
    compared = compare_systems(frame({"a": arr, "b": np.asarray(other)}), "text_to_molecule/mrr")
    assert all(0.0 <= s.ci_low <= s.ci_high <= 1.0 for s in compared.summaries)


def test_rank_metrics_keep_the_plain_t_interval():
    assert metric_bounds("text_to_molecule/median_rank") == (-np.inf, np.inf)
    assert metric_bounds("text_to_molecule_grouped/mrr") == (0.0, 1.0)
    m = mean_ci([1.0, 1.0, 1.2], metric_bounds("text_to_molecule/mean_rank"))
    assert m["ci_low"] < 1.0  # not cut
