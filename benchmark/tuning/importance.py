"""Which hyperparameters matter: Optuna's fANOVA importance on each fold's study, aggregated over folds.

Each outer fold has its own seeded Optuna study (inner validation only), so each fold gives one importance
per parameter (fANOVA's share of the objective's variance, summing to 1 over the parameters it saw). Over
the folds a parameter gets a mean with a t-based 95% CI cut to [0, 1] (`mean_ci`). Every completed trial
counts, including those successive halving stopped at a rung (their objective is their last validation
report); a parameter that only some trials have (a loss term's weight, present when the term is on) is
left to the switch that turns it on, as Optuna does. A fold with fewer than `MIN_TRIALS` completed trials
gives no importance.
"""

from __future__ import annotations

import logging
import warnings

from benchmark.evaluation.comparison import METRIC_RANGE, mean_ci

log = logging.getLogger(__name__)

MIN_TRIALS = 4


def fold_importances(storage: str, study_names: dict[str, str], seed: int = 0) -> dict[str, dict[str, float]]:
    """fold -> parameter -> fANOVA importance, from each fold's Optuna study in `storage`."""
    import optuna  # optuna: imported only when a study is read
    from optuna.importance import FanovaImportanceEvaluator  # optuna: imported only when a study is read

    out: dict[str, dict[str, float]] = {}
    for fold, name in study_names.items():
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # no such study (nothing was tuned in that fold)
            continue
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) < MIN_TRIALS:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(
                    study, evaluator=FanovaImportanceEvaluator(seed=seed), normalize=True
                )
        except (RuntimeError, ValueError) as exc:  # e.g. every trial with the same value
            log.warning("fold %s: no parameter importance (%s)", fold, exc)
            continue
        out[fold] = {param: float(v) for param, v in values.items()}
    return out


def summarize(per_fold: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """parameter -> {mean, ci_low, ci_high, n_folds} over the folds that measured it, most important first."""
    params = sorted({p for values in per_fold.values() for p in values})
    out = {}
    for param in params:
        values = [v[param] for v in per_fold.values() if param in v]
        summary = {k: v for k, v in mean_ci(values, METRIC_RANGE).items() if k != "sd"}
        if len(values) < 2:  # one fold: no interval
            summary.update(ci_low=float("nan"), ci_high=float("nan"))
        out[param] = summary
    return dict(sorted(out.items(), key=lambda item: -item[1]["mean"]))
