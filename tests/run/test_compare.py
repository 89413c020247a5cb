"""`compare`: an installed plugin encoder against the baselines, one command, the store's baseline fits reused."""

from __future__ import annotations

import json
import os
import sqlite3
import sys

import pytest
from suite_helpers import empty_store, write_cv_suite

from benchmark.core.errors import ConfigError, UnknownNameError


def tags_of(db, key: str) -> dict:
    with sqlite3.connect(db) as con:
        return dict(con.execute("select run_uuid, value from tags where key = ?", (key,)).fetchall())


def test_the_comparison_suite_holds_the_protocol_the_reference_and_each_encoder(tmp_path, tiny_csv):
    from benchmark.run.compare import comparison_suite
    from benchmark.tasks.specs import get_suite, get_system, scoped_registry
    from benchmark.tuning.space import load_search_space

    folder = write_cv_suite(tmp_path / "tasks", tiny_csv, name="unitcv")
    with pytest.MonkeyPatch.context() as patch, scoped_registry():
        patch.setenv("BENCHMARK_TASKS_DIR", str(folder))
        name = comparison_suite("unitcv", ["maccs"], ["letter-counts"], tuned=True)
        suite = get_suite(name)
        assert suite.tasks == get_suite("unitcv").tasks
        new = ["paper-mol-maccs", "paper-text-letter-counts", "paper-mol-maccs-text-letter-counts"]
        assert list(suite.systems) == ["unitcv-untrained", "unitcv-tuned", "paper-defaults", *new, suite.systems[-1]]
        both = load_search_space(get_system(new[2]).search_space).trial_config({})
        assert (both.mol_encoder.name, both.text_encoder.name) == ("maccs", "letter-counts")
        assert both.optim.epochs == 100 and both.loss.temperature == pytest.approx(0.07)  # the paper's otherwise
        tuned = load_search_space(get_system(suite.systems[-1]).search_space)
        assert "letter-counts" in tuned.parameters["text_encoder/name"].choices
        assert comparison_suite("unitcv", ["maccs"], ["letter-counts"], tuned=True) == name  # the same again
        with pytest.raises(UnknownNameError, match="Did you mean 'maccs'"):
            comparison_suite("unitcv", ["macs"], [])
        with pytest.raises(ConfigError, match="'minilm' is a text encoder; pass it with --text-encoder"):
            comparison_suite("unitcv", ["minilm"], [])
        with pytest.raises(ConfigError, match="is a holdout suite; compare runs repeated-CV suites"):
            comparison_suite("paper", ["maccs"], [])
        with pytest.raises(ConfigError, match="name at least one encoder"):
            comparison_suite("unitcv", [], [])


@pytest.mark.slow
def test_a_plugin_encoder_reaches_a_verdict_in_one_command_reusing_the_baselines(tmp_path, tiny_csv, cli_in_process):
    """The example plugin (installed by `make setup` as a package, found by its entry point) against a CV suite's
    systems: the first `run` fits the baselines; `compare` reads their fits back and trains only the new system."""
    folder = write_cv_suite(tmp_path / "tasks", tiny_csv, name="cmpcv", folds=3)
    db = tmp_path / "mlflow.db"
    uri = empty_store(db)
    env = {**os.environ, "BENCHMARK_TASKS_DIR": str(folder)}
    common = ["--tracking-uri", uri, "--offline"]
    first = cli_in_process(
        [sys.executable, "-m", "benchmark", "run", "--suite", "cmpcv", "--output", str(tmp_path / "a"), *common], env
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    out = tmp_path / "b"
    args = ["compare", "--protocol", "cmpcv", "--text-encoder", "letter-counts", "--output", str(out), *common]
    done = cli_in_process([sys.executable, "-m", "benchmark", *args], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "cmpcv-tuned: its fits on these folds are in this store already" in done.stdout
    results = json.loads((out / "results.json").read_text())
    entry = results["tasks"]["cmpcv-global"]
    assert set(entry["systems"]) == {"cmpcv-untrained", "cmpcv-tuned", "paper-defaults", "paper-text-letter-counts"}
    assert entry["comparison"]  # the verdict: the suite's own method comparison over the shared folds
    before = json.loads((tmp_path / "a" / "results.json").read_text())["tasks"]["cmpcv-global"]["systems"]
    for baseline in ("cmpcv-untrained", "cmpcv-tuned"):  # the very values the first run measured
        assert entry["systems"][baseline]["per_fold"] == before[baseline]["per_fold"]
    stage, system, reused = tags_of(db, "stage"), tags_of(db, "system"), tags_of(db, "reused_from")
    compare_uid, run_uids = results["run_uid"], tags_of(db, "run_uid")
    mine = [r for r, value in stage.items() if value == "fit" and run_uids.get(r) == compare_uid]
    for run in mine:  # baselines read back (one reference run per fold and task), the new systems fitted
        assert (run in reused) == system[run].startswith("cmpcv-"), system[run]
    assert sum(system[r] == "paper-text-letter-counts" for r in mine) == 3 * 2  # 3 folds x 2 tasks
    assert sum(r in reused for r in mine) == 2 * 3 * 2  # two baselines x 3 folds x 2 tasks, none refitted
    trials = [r for r, v in stage.items() if v == "trial" and run_uids.get(r) == compare_uid]
    assert not trials  # the tuned baseline was not searched again
