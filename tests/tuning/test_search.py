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
    from benchmark.tuning.tuner import check_tune_state

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


def test_a_resumed_study_fails_the_trials_its_saved_searcher_never_handed_out(tmp_path):
    """An `ask` after the last saved searcher state (a driver then killed) leaves a RUNNING Optuna trial no Tune
    trial will finish: restoring closes it as FAIL, marked superseded; the trials handed out keep their Tune id."""
    from benchmark.tuning.search import ResumableOptunaSearch
    from benchmark.tuning.space import SearchSpace

    space = SearchSpace(name="s", parameters={"loss/temperature": {"type": "float", "low": 0.03, "high": 0.2}})
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")

    def searcher():
        return ResumableOptunaSearch(
            space=space.define_by_run, metric=OBJECTIVE, mode="max", storage=storage, study_name="fold",
            sampler=optuna.samplers.TPESampler(seed=0),
        )  # fmt: skip

    first = searcher()
    first.suggest("t1")
    first.on_trial_complete("t1", {OBJECTIVE: 0.5})
    first.save(str(tmp_path / "saved.pkl"))
    first.suggest("t2")  # after the save: t2 finishes, t3 is asked; then the driver is killed
    first.on_trial_complete("t2", {OBJECTIVE: 0.7})
    first.suggest("t3")
    resumed = searcher()
    resumed.restore(str(tmp_path / "saved.pkl"))
    study = optuna.load_study(study_name="fold", storage=storage)
    states = [(t.user_attrs.get("tune_trial_id"), t.state.name) for t in study.trials]
    assert states == [("t1", "COMPLETE"), ("t2", "COMPLETE"), ("t3", "FAIL")]
    assert [bool(t.user_attrs.get("superseded")) for t in study.trials] == [False, False, True]
    assert study.user_attrs["superseded"] == [1, 2]  # t2 kept as an evaluation, but not one of the budget
    resumed.suggest("t4")  # the resumed search goes on in the same study
    assert optuna.load_study(study_name="fold", storage=storage).trials[-1].user_attrs["tune_trial_id"] == "t4"


def test_finished_trial_runs_tune_no_longer_knows_are_tagged_superseded(tmp_path):
    from benchmark.tracking.store import Tracker
    from benchmark.tuning.callback import TrialCallback
    from benchmark.tuning.space import SearchSpace

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "benchmark-lost")
    parent = tracker.start_run("task", {"stage": "task"})
    space = SearchSpace(name="s", parameters={"loss/temperature": {"type": "float", "low": 0.03, "high": 0.2}})
    callback = TrialCallback(tracker, {"t": parent}, {"t": "recall_at_1"}, "uid", space, progress=None, system="sys")
    for trial_id in ("kept", "lost"):
        run = tracker.start_run(trial_id, {"run_uid": "uid", "task": "t", "stage": "trial", "system": "sys",
                                           "trial_id": trial_id})  # fmt: skip
        tracker.end(run)
    other = tracker.start_run("x", {"run_uid": "uid", "task": "t", "stage": "trial",
                                    "system": "other", "trial_id": "z"})  # fmt: skip
    assert callback.supersede_lost({"kept"}) == 1
    assert callback.supersede_lost({"kept"}) == 0  # once
    tags = {r.data.tags["trial_id"]: r.data.tags for r in tracker.runs(stage="trial")}
    assert tags["lost"]["superseded"] == "true" and "replaced it" in tags["lost"]["mlflow.note.content"]
    assert "superseded" not in tags["kept"] and "superseded" not in tags["z"]  # another system's runs untouched
    assert tracker.runs(trial_id="z")[0].info.run_id == other


def test_only_a_folds_best_so_far_goes_on_from_the_last_rung():
    """Rungs at 1, 4, 16 reports of 20: at 16, plain ASHA lets the third trial go on (above its 75th percentile);
    the incumbent rule stops it (below the fold's best there); another fold's trials do not count."""
    asha = {"time_attr": "training_iteration", "max_t": 20, "grace_period": 1, "reduction_factor": 4}
    scheduler, plain = PerFoldHalving(**asha), ASHAScheduler(metric=OBJECTIVE, mode="max", **asha)
    assert scheduler.top_rung == 16
    t1, t2, t3, other = trial("t1", "r0f0"), trial("t2", "r0f0"), trial("t3", "r0f0"), trial("o", "r0f1")
    for t in (t1, t2, t3, other):
        scheduler.on_trial_add(None, t)
        plain.on_trial_add(None, t)
    verdicts = {}
    for t, low, top in ((t1, 0.5, 0.5), (other, 0.6, 0.6), (t2, 0.9, 0.1), (t3, 0.95, 0.45)):
        for rung in (1, 4):
            assert report(scheduler, t, low, rung) == TrialScheduler.CONTINUE
            if t is not other:
                report(plain, t, low, rung)
        verdicts[t.trial_id] = (report(scheduler, t, top, 16), None if t is other else report(plain, t, top, 16))
    assert verdicts["t1"] == (TrialScheduler.CONTINUE, TrialScheduler.CONTINUE)
    assert verdicts["o"][0] == TrialScheduler.CONTINUE  # first in its own fold (0.6 > 0.5 elsewhere: not counted)
    assert verdicts["t3"] == (TrialScheduler.STOP, TrialScheduler.CONTINUE)  # 0.45: above ASHA's cutoff, below 0.5
    assert scheduler.best_at_top == {"r0f0": 0.5, "r0f1": 0.6}
    assert PerFoldHalving(**{**asha, "max_t": 1}).top_rung is None


def test_a_stop_fails_running_trials_and_their_rerun_joins_the_study(tmp_path):
    """No Optuna trial stays RUNNING after a stop; the resumed run's result for it is a new COMPLETE trial with the
    same parameters (`rerun_of`), and a trial that had finished on its own is not recorded twice."""
    from benchmark.tuning.search import ResumableOptunaSearch, close_interrupted
    from benchmark.tuning.space import SearchSpace

    space = SearchSpace(name="s", parameters={"loss/temperature": {"type": "float", "low": 0.03, "high": 0.2}})
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = ResumableOptunaSearch(
        space=space.define_by_run, metric=OBJECTIVE, mode="max", storage=optuna.storages.RDBStorage(url),
        study_name="fold", sampler=optuna.samplers.TPESampler(seed=0),
    )  # fmt: skip
    searcher.suggest("done")
    searcher.on_trial_complete("done", {OBJECTIVE: 0.4})
    searcher.suggest("cut")
    assert close_interrupted(url, ["fold", "never-created"]) == 1
    study = optuna.load_study(study_name="fold", storage=url)
    assert [(t.state.name, t.user_attrs.get("interrupted")) for t in study.trials] == [
        ("COMPLETE", None),
        ("FAIL", True),
    ]
    searcher.on_trial_complete("cut", {OBJECTIVE: 0.6})  # the resumed run trained it again
    searcher.on_trial_complete("done", {OBJECTIVE: 0.4})  # re-run by Tune after a restore: closed already
    trials = optuna.load_study(study_name="fold", storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].value == 0.6 and trials[2].params == trials[1].params
    assert trials[2].user_attrs == {"tune_trial_id": "cut", "rerun_of": 1}
