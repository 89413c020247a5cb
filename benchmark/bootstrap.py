"""Percentile bootstrap confidence intervals from per-query values.

Grouped metrics resample whole groups (targets), so queries of one target move together.
`paired_bootstrap` compares two systems evaluated on the same queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int
    n_groups: int | None = None

    def as_dict(self) -> dict:
        out = {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}
        if self.n_groups is not None:
            out["n_groups"] = self.n_groups
        return out


def _resample_means(values: np.ndarray, groups: np.ndarray | None, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    if groups is None:
        n = len(values)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (B, n) resample multiplicities
        return counts @ values / n
    _, codes = np.unique(groups, return_inverse=True)
    sums = np.bincount(codes, weights=values)
    sizes = np.bincount(codes).astype(np.float64)
    g = len(sums)
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot)
    return (counts @ sums) / (counts @ sizes)


def bootstrap_mean(values, *, groups=None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    """Mean of per-query values with a percentile CI (group-level resampling when `groups` given)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0 if groups is not None else None)
    groups_arr = None if groups is None else np.asarray(groups)
    point = float(values.mean())
    stats = _resample_means(values, groups_arr, n_boot, np.random.default_rng(seed))
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    n_groups = None if groups_arr is None else int(len(np.unique(groups_arr)))
    return Estimate(point, float(low), float(high), int(len(values)), n_groups)


def bootstrap_median(values, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    stats = np.median(values[idx], axis=1)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(np.median(values)), float(low), float(high), int(len(values)))


@dataclass(frozen=True)
class PairedDifference:
    """mean(a) - mean(b) over shared queries, its CI, and a two-sided bootstrap p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    def as_dict(self) -> dict:
        return {"difference": self.difference, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "n": self.n}


def paired_bootstrap(a, b, *, groups=None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> PairedDifference:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs the same queries for both systems: {a.shape} vs {b.shape}")
    diff = a - b
    stats = _resample_means(diff, None if groups is None else np.asarray(groups), n_boot, np.random.default_rng(seed))
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    p = 2 * min(np.mean(stats <= 0), np.mean(stats >= 0))
    return PairedDifference(float(diff.mean()), float(low), float(high), float(min(1.0, p)), int(len(diff)))
