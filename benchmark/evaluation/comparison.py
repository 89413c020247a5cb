"""Which systems differ, across cross-validation folds: the Ash et al. (2025) protocol.

Every system is measured on the same folds, so the fold is the subject of a repeated-measures
design. The parametric path is a repeated-measures ANOVA (statsmodels AnovaRM) followed by Tukey
HSD over all pairs, with the error term of the fold-blocked model (residual mean square of
value ~ system + fold, (k-1)(n-1) degrees of freedom) and scipy's studentized range. It is used
when its assumptions hold well enough: the ratio of the largest to the smallest per-system
variance at most `max_variance_ratio` (9 in the paper) and Levene's test not rejecting. Otherwise:
Friedman's test and the Conover post-hoc test with Holm correction (scikit-posthocs), or the
Wilcoxon signed-rank test for two systems. Effect sizes are mean differences with Tukey
simultaneous 95% CIs on either path. Letters (compact letter display): systems sharing a
letter are not significantly different.

Caveat, as in the paper: CV folds share training data, so fold values are not independent and
the across-fold CIs of single systems are optimistic; the paired tests are the conclusion.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

PARAMETRIC = "repeated-measures ANOVA + Tukey HSD"
FRIEDMAN = "Friedman + Conover (Holm)"
WILCOXON = "Wilcoxon signed-rank"


def _stats():
    """scipy.stats, imported on first use: ~1 s of imports that a trial worker (which reaches this module through
    the evaluation package's face, for the bootstrap only) never needs."""
    from scipy import stats  # scipy: heavy, imported only by the functions that run a statistical test

    return stats


@dataclass
class SystemSummary:
    system: str
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    n_folds: int
    mean_rank: float  # across folds, 1 = best


@dataclass
class PairDifference:
    a: str
    b: str
    difference: float  # mean of a minus mean of b (paired by fold)
    ci_low: float  # Tukey simultaneous 95% CI
    ci_high: float
    p_adj: float  # from the test that ran (family-wise adjusted)
    significant: bool


@dataclass
class Comparison:
    metric: str
    n_folds: int
    alpha: float
    test: str
    reason: str
    omnibus: dict
    checks: dict
    summaries: list[SystemSummary]  # best mean first
    pairs: list[PairDifference]
    letters: dict[str, str]
    p_matrix: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def systems(self) -> list[str]:
        return [s.system for s in self.summaries]

    def pair(self, a: str, b: str) -> PairDifference:
        for p in self.pairs:
            if (p.a, p.b) == (a, b):
                return p
            if (p.b, p.a) == (a, b):
                return PairDifference(a, b, -p.difference, -p.ci_high, -p.ci_low, p.p_adj, p.significant)
        raise KeyError((a, b))

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "n_folds": self.n_folds,
            "alpha": self.alpha,
            "test": self.test,
            "reason": self.reason,
            "omnibus": self.omnibus,
            "checks": self.checks,
            "systems": [asdict(s) for s in self.summaries],
            "pairs": [asdict(p) for p in self.pairs],
            "letters": self.letters,
            "p_matrix": self.p_matrix,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Comparison:
        return cls(
            data["metric"],
            data["n_folds"],
            data["alpha"],
            data["test"],
            data["reason"],
            data["omnibus"],
            data["checks"],
            [SystemSummary(**s) for s in data["systems"]],
            [PairDifference(**p) for p in data["pairs"]],
            data["letters"],
            data.get("p_matrix", {}),
        )


def wide_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Long (system, fold, value) -> folds x systems; only folds every system has."""
    missing = {"system", "fold", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"comparison needs columns system, fold, value; missing {sorted(missing)}")
    wide = frame.pivot_table(index="fold", columns="system", values="value", aggfunc="mean")
    return wide.dropna(axis=0, how="any").sort_index(axis=0).sort_index(axis=1)


METRIC_RANGE = (0.0, 1.0)  # Recall@k and MRR (global or grouped) are means of per-query values in [0, 1]
UNBOUNDED = (-np.inf, np.inf)


def metric_bounds(key: str) -> tuple[float, float]:
    """The range of a metric named by its key ('text_to_molecule/recall@1', 'mrr'); unbounded for ranks."""
    metric = key.rsplit("/", 1)[-1]
    return METRIC_RANGE if metric == "mrr" or metric.startswith("recall@") else UNBOUNDED


def mean_ci(values, bounds: tuple[float, float] = METRIC_RANGE) -> dict:
    """Mean across folds with a t-based 95% CI inside the metric's range, the sd and the number of folds.

    The t interval is intersected with `bounds`: the true mean lies in the range, so a confidence set cut to
    the parameter space covers it whenever the uncut one does (same coverage), and a recall of 0.001 no
    longer gets a lower bound of -0.001. Pass `bounds=(-inf, inf)` for an unbounded quantity.
    """
    arr = np.asarray(values, float)
    n = len(arr)
    mean = float(arr.mean()) if n else float("nan")
    sd = float(arr.std(ddof=1)) if n > 1 else 0.0
    half = float(_stats().t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
    low, high = bounds
    return {
        "mean": mean,
        "ci_low": max(mean - half, low) if n > 1 else float("nan"),
        "ci_high": min(mean + half, high) if n > 1 else float("nan"),
        "n_folds": n,
        "sd": sd,
    }


def _summaries(wide: pd.DataFrame, bounds: tuple[float, float]) -> list[SystemSummary]:
    ranks = wide.rank(axis=1, ascending=False).mean(axis=0)
    out = []
    for system in wide.columns:
        m = mean_ci(wide[system].to_numpy(float), bounds)
        out.append(
            SystemSummary(system, m["mean"], m["sd"], m["ci_low"], m["ci_high"], m["n_folds"], float(ranks[system]))
        )
    return sorted(out, key=lambda s: (-s.mean, s.system))


def _assumptions(wide: pd.DataFrame, max_variance_ratio: float, alpha: float) -> tuple[bool, str, dict]:
    variances = wide.var(axis=0, ddof=1).to_numpy(float)
    ratio = float(variances.max() / variances.min()) if variances.min() > 0 else float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        levene_p = float(_stats().levene(*[wide[c].to_numpy(float) for c in wide.columns]).pvalue)
    checks = {"variance_ratio": ratio, "max_variance_ratio": max_variance_ratio, "levene_p": levene_p}
    if not np.isfinite(ratio):
        return False, "a system has the same value on every fold (zero variance)", checks
    if ratio > max_variance_ratio:
        return False, f"variance ratio {ratio:.1f} > {max_variance_ratio:g}", checks
    if levene_p < alpha:
        return False, f"Levene's test rejects equal variances (p = {levene_p:.3g})", checks
    return True, f"variance ratio {ratio:.1f} <= {max_variance_ratio:g} and Levene p = {levene_p:.3g}", checks


def _tukey(wide: pd.DataFrame, alpha: float) -> tuple[dict, dict[tuple[str, str], tuple[float, float, float, float]]]:
    """RM-ANOVA (statsmodels) and Tukey HSD with the fold-blocked error term."""
    import statsmodels.formula.api as smf  # statsmodels: heavy, imported only for the repeated-measures ANOVA
    from statsmodels.stats.anova import AnovaRM  # statsmodels: heavy, imported only for the repeated-measures ANOVA

    long = wide.reset_index().melt(id_vars="fold", var_name="system", value_name="value")
    k, n = wide.shape[1], wide.shape[0]
    anova = AnovaRM(long, "value", "fold", within=["system"]).fit().anova_table
    model = smf.ols("value ~ C(system) + C(fold)", data=long).fit()
    mse, df = float(model.mse_resid), float(model.df_resid)
    omnibus = {
        "test": "AnovaRM",
        "F": float(anova["F Value"].iloc[0]),
        "df_num": float(anova["Num DF"].iloc[0]),
        "df_den": float(anova["Den DF"].iloc[0]),
        "p_value": float(anova["Pr > F"].iloc[0]),
        "mse": mse,
        "df_error": df,
    }
    se = np.sqrt(mse / n)
    q_crit = float(_stats().studentized_range.ppf(1 - alpha, k, df)) if se > 0 else float("nan")
    means = wide.mean(axis=0)
    out = {}
    for i, a in enumerate(wide.columns):
        for b in wide.columns[i + 1 :]:
            diff = float(means[a] - means[b])
            p = float(_stats().studentized_range.sf(abs(diff) / se, k, df)) if se > 0 else (0.0 if diff else 1.0)
            out[(a, b)] = (diff, diff - q_crit * se, diff + q_crit * se, min(1.0, p))
    return omnibus, out


def _nonparametric(wide: pd.DataFrame) -> tuple[str, dict, dict[tuple[str, str], float]]:
    cols = list(wide.columns)
    if len(cols) == 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _stats().wilcoxon(wide[cols[0]], wide[cols[1]], zero_method="zsplit")
        return (
            WILCOXON,
            {"test": "wilcoxon", "statistic": float(result.statistic), "p_value": float(result.pvalue)},
            {(cols[0], cols[1]): float(result.pvalue)},
        )
    import scikit_posthocs as sp  # scikit_posthocs: imported only for the Conover test

    friedman = _stats().friedmanchisquare(*[wide[c].to_numpy(float) for c in cols])
    p = sp.posthoc_conover_friedman(wide.to_numpy(float), p_adjust="holm")
    p.index = p.columns = cols
    pairs = {(a, b): float(p.loc[a, b]) for i, a in enumerate(cols) for b in cols[i + 1 :]}
    return (
        FRIEDMAN,
        {"test": "friedman", "statistic": float(friedman.statistic), "p_value": float(friedman.pvalue)},
        pairs,
    )


def compare_systems(
    frame: pd.DataFrame, metric: str = "", *, alpha: float = 0.05, max_variance_ratio: float = 9.0
) -> Comparison:
    """Compare every pair of systems on the folds they share (long frame: system, fold, value)."""
    wide = wide_table(frame)
    if wide.shape[1] < 2:
        raise ValueError(f"comparison needs at least two systems; got {list(wide.columns)}")
    if wide.shape[0] < 3:
        raise ValueError(f"comparison needs at least three folds shared by every system; got {wide.shape[0]}")
    parametric, reason, checks = _assumptions(wide, max_variance_ratio, alpha)
    omnibus, tukey = _tukey(wide, alpha)
    if parametric:
        test, p_values = PARAMETRIC, {pair: v[3] for pair, v in tukey.items()}
    else:
        test, omnibus_np, p_values = _nonparametric(wide)
        omnibus = {**omnibus_np, "anova_for_reference": omnibus}
    pairs = [
        PairDifference(a, b, d, lo, hi, p_values[(a, b)], p_values[(a, b)] < alpha)
        for (a, b), (d, lo, hi, _) in tukey.items()
    ]
    cols = list(wide.columns)
    matrix = pd.DataFrame(1.0, index=cols, columns=cols)
    for (a, b), p in p_values.items():
        matrix.loc[a, b] = matrix.loc[b, a] = p
    summaries = _summaries(wide, metric_bounds(metric))
    return Comparison(
        metric,
        int(wide.shape[0]),
        alpha,
        test,
        reason,
        omnibus,
        checks,
        summaries,
        pairs,
        _letters(matrix, [s.system for s in summaries], alpha),
        {a: {b: float(matrix.loc[a, b]) for b in cols} for a in cols},
    )


def _letters(p: pd.DataFrame, order: list[str], alpha: float) -> dict[str, str]:
    """Compact letter display (scikit-posthocs), letters renamed so the best system's come first."""
    import scikit_posthocs as sp  # scikit_posthocs: imported only for the Conover test

    ordered = p.loc[order, order]
    raw = sp.compact_letter_display(ordered, alpha=alpha)
    rename: dict[str, str] = {}
    for system in order:
        for letter in raw[system].replace(" ", ""):
            rename.setdefault(letter, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[len(rename)])
    return {s: "".join(sorted(rename[c] for c in raw[s].replace(" ", ""))) for s in order}
