"""Successive halving inside each fold, and fANOVA importance over folds (unit level, no Ray trials)."""

from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from benchmark.tuning.importance import fold_importances, summarize
from benchmark.tuning.search import PerFoldHalving, halving
from benchmark.tuning.trainable import FOLD_KEY, OBJECTIVE

ASHA = {"time_attr": "training_iteration", "max_t": 4, "grace_period": 1, "reduction_factor": 2}


def trial(name: str, fold: str):
    return SimpleNamespace(trial_id=name, config={FOLD_KEY: fold})


def report(scheduler, t, value: float, iteration: int = 1) -> str:
    return scheduler.on_trial_result(None, t, {"training_iteration": iteration, OBJECTIVE: value})


def test_trials_meet_only_the_trials_of_their_own_fold():
    """Fold B's inner validation is harder (lower values): one scheduler for all would stop fold B's first trial
    against fold A's; per fold, B's first trial sets its own fold's rung."""
    a1, a2, b1, b2 = trial("a1", "r0f0"), trial("a2", "r0f0"), trial("b1", "r0f1"), trial("b2", "r0f1")
    shared = ASHAScheduler(metric=OBJECTIVE, mode="max", **ASHA)
    per_fold = PerFoldHalving(**ASHA)
    for scheduler in (shared, per_fold):
        for t in (a1, a2, b1, b2):
            scheduler.on_trial_add(None, t)
    assert report(shared, a1, 0.9) == report(per_fold, a1, 0.9) == TrialScheduler.CONTINUE
    assert report(shared, b1, 0.1) == TrialScheduler.STOP  # compared with fold A's trial
    assert report(per_fold, b1, 0.1) == TrialScheduler.CONTINUE  # the first of its fold
    assert report(per_fold, b2, 0.05) == TrialScheduler.STOP  # worse than its own fold's rung
    assert report(per_fold, a2, 0.95) == TrialScheduler.CONTINUE
    assert set(per_fold.per_fold) == {"r0f0", "r0f1"}
    assert report(per_fold, a2, 0.95, iteration=4) == TrialScheduler.STOP  # the full budget: the natural end


def test_halving_is_per_fold_under_cv_and_plain_asha_otherwise():
    assert isinstance(halving(6, ["r0f0", "r0f1"]), PerFoldHalving)
    plain = halving(6, None)
    assert isinstance(plain, ASHAScheduler) and plain.set_search_properties(OBJECTIVE, "max")


def _study(storage: str, name: str, seed: int, n: int = 16) -> None:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x, noise = float(rng.uniform(0, 1)), float(rng.uniform(0, 1))
        study.enqueue_trial({"loss/temperature": x, "optim/lr": noise})
        study.optimize(lambda t: -((t.suggest_float("loss/temperature", 0, 1) - 0.3) ** 2)
                       + 0.001 * t.suggest_float("optim/lr", 0, 1), n_trials=1)  # fmt: skip


def test_fanova_importance_per_fold_and_over_folds(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for i, fold in enumerate(("r0f0", "r0f1", "r0f2")):
        _study(storage, f"s-{fold}", seed=i)
    _study(storage, "s-r0f3", seed=9, n=2)  # too few trials: no importance for that fold
    per_fold = fold_importances(storage, {f: f"s-{f}" for f in ("r0f0", "r0f1", "r0f2", "r0f3", "r9f9")})
    assert set(per_fold) == {"r0f0", "r0f1", "r0f2"}
    for values in per_fold.values():
        assert values["loss/temperature"] > values["optim/lr"] and sum(values.values()) == pytest.approx(1.0)
    summary = summarize(per_fold)
    assert list(summary) == ["loss/temperature", "optim/lr"]  # most important first
    t = summary["loss/temperature"]
    assert t["n_folds"] == 3 and 0.0 <= t["ci_low"] <= t["mean"] <= t["ci_high"] <= 1.0
    assert t["mean"] == pytest.approx(np.mean([v["loss/temperature"] for v in per_fold.values()]))


def test_a_damaged_tune_state_is_refused_before_restore(tmp_path):
    import json

    from benchmark.core.errors import BenchmarkError
    from benchmark.tuning.search import check_tune_state

    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "experiment_state-2026.json").write_text(json.dumps({"trial_data": ["t1", "t2", "t3"]}))
    (folder / "searcher-state-2026.pkl").write_text(json.dumps({"given": {"r0f0": 2, "r0f1": 1}}))
    check_tune_state(str(folder))  # consistent: three trials started, three listed
    (folder / "searcher-state-2026.pkl").write_text(json.dumps({"given": {"r0f0": 4, "r0f1": 2}}))
    with pytest.raises(BenchmarkError, match="lists 3 trials but the search had started 6"):
        check_tune_state(str(folder))
    (folder / "experiment_state-2026.json").write_text('{"trial_data": ["t1", ')
    with pytest.raises(BenchmarkError, match="experiment_state-2026.json is damaged"):
        check_tune_state(str(folder))
    (folder / "experiment_state-2026.json").unlink()
    with pytest.raises(BenchmarkError, match="missing"):
        check_tune_state(str(folder))
