"""Percentile bootstrap confidence intervals from per-query values.

Grouped metrics resample whole groups (targets), so queries of one target move together.
`paired_bootstrap` compares two systems evaluated on the same queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: a cluster bootstrap over fewer groups than this draws too few distinct resamples for a 95% interval (one group:
#: every resample is the sample, an interval of zero width; two groups: three distinct means), so an estimate over
#: fewer groups carries no interval and no p-value, and says why
MIN_GROUPS = 5


def too_few_groups(groups) -> str | None:
    """Why grouped resampling gives no interval here (fewer than `MIN_GROUPS` groups), or None."""
    if groups is None:
        return None
    count = len(np.unique(np.asarray(groups)))
    if count >= MIN_GROUPS:
        return None
    plural = "s" if count != 1 else ""
    return f"only {count} group{plural}: no 95% CI or p-value (a cluster bootstrap needs >= {MIN_GROUPS})"


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int
    n_groups: int | None = None
    note: str | None = None  # why there is no interval (too few groups)

    def as_dict(self) -> dict:
        out = {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}
        if self.n_groups is not None:
            out["n_groups"] = self.n_groups
        if self.note:
            out["note"] = self.note
        return out


#: indices drawn at once (rows x n): bounds memory and keeps the draws cache-friendly
_MAX_DRAWN = 5_000_000


def _resample_chunks(n: int, n_boot: int, rng: np.random.Generator):
    """Index matrices of resamples (one row per resample: n draws with replacement), in chunks."""
    rows = max(1, min(n_boot, _MAX_DRAWN // max(n, 1)))
    dtype = np.int32 if n < 2**31 else np.int64
    for start in range(0, n_boot, rows):
        yield (
            slice(start, min(start + rows, n_boot)),
            rng.integers(0, n, size=(min(rows, n_boot - start), n), dtype=dtype),
        )


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Multiplicity of each item in each resample row: (rows, n) integers."""
    k = idx.shape[0]
    dtype = np.int32 if k * n < 2**31 else np.int64
    flat = (idx.astype(dtype, copy=False) + (n * np.arange(k, dtype=dtype))[:, None]).ravel()
    return np.bincount(flat, minlength=k * n).reshape(k, n)


def _weighted_medians(sorted_values: np.ndarray, counts_sorted: np.ndarray, n: int, block: int = 1024) -> np.ndarray:
    """np.median of each resample from its multiplicities over the sorted values: block sums
    find the block holding each middle order statistic, a short cumulative sum finds it within."""
    k = counts_sorted.shape[0]
    starts = np.arange(0, n, block)
    cum_blocks = np.cumsum(np.add.reduceat(counts_sorted, starts, axis=1), axis=1)
    window = np.arange(block)
    halves = []
    for position in ((n - 1) // 2, n // 2):  # 0-based order statistics averaged by np.median
        b = (cum_blocks <= position).sum(axis=1)
        before = np.where(b > 0, cum_blocks[np.arange(k), np.maximum(b - 1, 0)], 0)
        columns = np.minimum(starts[b][:, None] + window, n - 1)
        inside = np.cumsum(
            np.where(starts[b][:, None] + window < n, counts_sorted[np.arange(k)[:, None], columns], 0), axis=1
        )
        j = (inside <= (position - before)[:, None]).sum(axis=1)
        halves.append(sorted_values[starts[b] + j])
    return 0.5 * (halves[0] + halves[1])


def resample_statistics(
    values: dict[str, np.ndarray],
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    medians: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """The mean (or, for names in `medians`, the median) of each vector over `n_boot` resamples.

    All vectors share the resamples (joint resampling of queries, as the metrics describe the
    same queries). With `groups`, whole groups are resampled and means are ratio estimates
    (sum of values / number of queries of the drawn groups); medians need no groups.
    Each chunk of resamples becomes a multiplicity matrix, so every mean is one matrix product
    and every median one cumulative sum; memory stays bounded by `_MAX_DRAWN`.
    """
    rng = np.random.default_rng(seed)
    names = list(values)
    out = {name: np.empty(n_boot) for name in names}
    mean_names = [name for name in names if name not in medians]
    if groups is None:
        n = len(values[names[0]])
        matrix = (
            np.stack([np.asarray(values[name], dtype=np.float64) for name in mean_names], axis=1)
            if mean_names
            else None
        )
        orders = {name: np.argsort(values[name], kind="stable") for name in medians}
        for rows, idx in _resample_chunks(n, n_boot, rng):
            counts = _counts(idx, n)
            if matrix is not None:
                means = counts.astype(np.float64) @ matrix / n
                for j, name in enumerate(mean_names):
                    out[name][rows] = means[:, j]
            for name, order in orders.items():
                out[name][rows] = _weighted_medians(
                    np.asarray(values[name], dtype=np.float64)[order], np.take(counts, order, axis=1), n
                )
        return out
    if medians:
        raise ValueError("group bootstrap of a median is not supported")
    _, codes = np.unique(groups, return_inverse=True)
    sizes = np.bincount(codes).astype(np.float64)
    sums = np.stack([np.bincount(codes, weights=values[name]) for name in names], axis=1)
    g = len(sizes)
    for rows, idx in _resample_chunks(g, n_boot, rng):
        counts = _counts(idx, g).astype(np.float64)
        ratios = (counts @ sums) / (counts @ sizes)[:, None]
        for j, name in enumerate(names):
            out[name][rows] = ratios[:, j]
    return out


def _resample_means(values: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int) -> np.ndarray:
    return resample_statistics({"v": values}, groups=groups, n_boot=n_boot, seed=seed)["v"]


def interval(stats: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_mean(values, *, groups=None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    """Mean of per-query values with a percentile CI (group-level resampling when `groups` given)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0 if groups is not None else None)
    groups_arr = None if groups is None else np.asarray(groups)
    n_groups = None if groups_arr is None else int(len(np.unique(groups_arr)))
    note = too_few_groups(groups_arr)
    if note:
        return Estimate(float(values.mean()), math.nan, math.nan, int(len(values)), n_groups, note)
    low, high = interval(_resample_means(values, groups_arr, n_boot, seed), alpha)
    return Estimate(float(values.mean()), low, high, int(len(values)), n_groups)


def bootstrap_median(values, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    stats = resample_statistics({"v": values}, n_boot=n_boot, seed=seed, medians=("v",))["v"]
    low, high = interval(stats, alpha)
    return Estimate(float(np.median(values)), low, high, int(len(values)))


@dataclass(frozen=True)
class PairedDifference:
    """mean(a) - mean(b) over shared queries, its CI, and a two-sided bootstrap p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    note: str | None = None  # why there is no interval or p-value (too few groups)

    def as_dict(self) -> dict:
        out = {
            "difference": self.difference,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "n": self.n,
        }
        return {**out, "note": self.note} if self.note else out


def paired_bootstrap(a, b, *, groups=None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> PairedDifference:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs the same queries for both systems: {a.shape} vs {b.shape}")
    diff = a - b
    note = too_few_groups(groups)
    if note:
        return PairedDifference(float(diff.mean()), math.nan, math.nan, math.nan, int(len(diff)), note)
    stats = _resample_means(diff, None if groups is None else np.asarray(groups), n_boot, seed)
    low, high = interval(stats, alpha)
    p = 2 * min(np.mean(stats <= 0), np.mean(stats >= 0))
    return PairedDifference(float(diff.mean()), float(low), float(high), float(min(1.0, p)), int(len(diff)))
