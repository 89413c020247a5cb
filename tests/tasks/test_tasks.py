"""Task registry, suites and search spaces: validation, names, compilation to Optuna."""

import optuna
import pytest

from benchmark.core.errors import ConfigError, UnknownNameError
from benchmark.core.registry import DuplicateNameError
from benchmark.tasks.specs import TASKS, get_suite, get_task, load_registry, register_task, scoped_registry
from benchmark.tuning.space import SearchSpace, load_search_space


def test_default_registry_has_the_documented_tasks_and_suites():
    default = get_suite("default")
    assert set(default.tasks) == {"random-global", "random-grouped", "scaffold-global", "scaffold-grouped"}
    assert {"quick", "paper"} <= set(get_suite("quick").tasks) | {"quick", "paper"}
    assert get_task("paper-pair-global").leaky and not get_task("scaffold-grouped").leaky
    assert get_task("scaffold-grouped").primary_key == "text_to_molecule_grouped/recall@1"
    # tasks on one split share trials; different splits do not
    assert get_task("scaffold-global").split_key() == get_task("scaffold-grouped").split_key()
    assert get_task("scaffold-global").split_key() != get_task("random-global").split_key()


def test_unknown_names_suggest():
    with pytest.raises(UnknownNameError, match="Did you mean 'scaffold-grouped'"):
        get_task("scaffold-groupd")
    with pytest.raises(UnknownNameError, match="Did you mean 'quick'"):
        get_suite("quik")
    with pytest.raises(UnknownNameError, match="Did you mean 'default'"):
        load_search_space("defualt")


def test_register_from_python_and_refuse_duplicates():
    task = register_task({"name": "py-task", "description": "registered from Python", "split": {"name": "scaffold"}})
    assert TASKS.get("py-task") is task
    with pytest.raises(DuplicateNameError, match="registered twice"):
        register_task({"name": "py-task", "description": "again"})


def test_a_scoped_registry_forgets_what_a_folder_registered(tmp_path):
    """Two folders that define the same task name, loaded one after the other in one process (as the tests' in-process
    resumes do): each inside a scope, both load; without scopes, the second is refused."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "same.yaml").write_text(f"name: scoped-same\ndescription: from {name}\n")
    for name in ("a", "b"):
        with scoped_registry():
            load_registry(tmp_path / name)
            assert get_task("scoped-same").description == f"from {name}"
        assert "scoped-same" not in TASKS
    with scoped_registry():
        load_registry(tmp_path / "a")
        with pytest.raises(DuplicateNameError, match="registered twice"):
            load_registry(tmp_path / "b")


@pytest.mark.parametrize(
    "body,message",
    [
        ("name: t1\ndescription: x\nsplit: {name: scafold}\n", "Did you mean 'scaffold'"),
        ("name: t2\ndescription: x\nsplit: {fractions: [0.8, 0.1, 0.2]}\n", "summing to 1"),
        ("name: t3\ndescription: x\nretrieval: grouped\nprimary_metric: recall@5\n", "not one of"),
        ("name: t4\ndescription: x\ncolour: blue\n", "colour"),
        ("name: t5\ndescription: [unclosed\n", "broken YAML"),
        ("- just\n- a list\n", "mapping"),
        ("name: t6\ndescription: x\nsplit: {name: pair}\nprotocol: {kind: repeated_cv}\n", "non-leaky split"),
        ("name: t7\ndescription: x\nprotocol: {kind: repeated_cv, folds: 1}\n", "folds"),
        ("name: t8\ndescription: x\nprotocol: bootstrap\n", "protocol.kind"),
    ],
)
def test_bad_task_files_are_explained(tmp_path, body, message):
    (tmp_path / "bad.yaml").write_text(body)
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        load_registry(tmp_path)


def test_suite_naming_an_unknown_task_is_refused(tmp_path):
    (tmp_path / "suites.yaml").write_text("s:\n  description: x\n  tasks: [scaffold-globl]\n")
    get_task("scaffold-global")  # default tasks loaded
    with pytest.raises(UnknownNameError, match="Did you mean 'scaffold-global'"):
        load_registry(tmp_path)


def test_search_space_samples_term_parameters_only_when_on():
    space = load_search_space("default")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_on = seen_off = False
    for _ in range(30):
        trial = study.ask()
        space.define_by_run(trial)
        params = trial.params
        cfg = space.trial_config(params)
        assert 0.02 <= cfg.loss.temperature <= 0.2 and cfg.optim.epochs == 100
        if params["terms/margin"]:
            seen_on = True
            assert "loss/margin" in params and cfg.loss.margin == params["loss/margin"]
        else:
            seen_off = True
            assert "loss/margin" not in params and cfg.loss.margin == 0.0
        study.tell(trial, 0.0)
    assert seen_on and seen_off


def test_nested_tune_config_and_overrides():
    space = load_search_space("quick")
    cfg = space.trial_config({"loss": {"temperature": 0.05}, "terms": {"margin": False}}, seed=7)
    assert cfg.loss.temperature == 0.05 and cfg.seed == 7 and cfg.optim.epochs == 30


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"parameters": {"loss/temperature": {"type": "float", "low": -1, "high": 0.1}}}, "temperature"),
        ({"parameters": {"loss/temprature": {"type": "float", "low": 0.01, "high": 0.1}}}, "temprature"),
        ({"parameters": {"loss/temperature": {"type": "float", "low": 0.2, "high": 0.1}}}, "low <= high"),
        ({"parameters": {"bridge/head": {"type": "categorical", "choices": []}}}, "choices"),
        ({"parameters": {"terms/x": {"type": "categorical", "choices": [1]}}}, "reserved"),
        (
            {"parameters": {"optim/lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}}},
            "log scale with a step",
        ),
        (
            {"parameters": {"bridge/dim": {"type": "int", "low": 64, "high": 512, "log": True, "step": 64}}},
            "log scale with a step",
        ),
        (
            {"parameters": {"optim/lr": {"type": "float", "low": 1e-4, "high": 1e-2, "step": 0}}},
            "step' must be positive",
        ),
        ({"parameters": {"bridge/dim": {"type": "int", "low": 64.5, "high": 512}}}, "whole low, high and step"),
    ],
)
def test_invalid_search_spaces(tmp_path, spec, message):
    import yaml

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"name": "s", **spec}))
    with pytest.raises(ConfigError, match=message):
        load_search_space(path)


def test_encoder_choices_are_known_up_front():
    space = SearchSpace(
        name="e", parameters={"mol_encoder/name": {"type": "categorical", "choices": ["ecfp4", "maccs"]}}
    )
    mols, texts = space.encoder_choices()
    assert [m["name"] for m in mols] == ["ecfp4", "maccs"] and [t["name"] for t in texts] == ["minilm"]


def test_protocols_of_the_shipped_tasks_and_systems():
    from benchmark.tasks.specs import get_system

    default = get_suite("default")
    assert {"untrained-heads", "paper-defaults", "tuned-linear"} <= set(default.systems)
    searched = get_system("tuned-linear")  # issue 22: a search worth the name inside every fold
    assert searched.num_samples >= 32 and searched.successive_halving
    search = get_suite("search")  # the rivals tuned on the same footing
    assert {"second-order", "tuned-second-order", "gin", "tuned-gin"} <= set(search.systems)
    assert all(get_system(s).successive_halving for s in ("tuned-second-order", "tuned-gin"))
    for name in default.tasks:
        protocol = get_task(name).protocol
        assert protocol.is_cv and (protocol.folds, protocol.repeats) == (5, 5)
    assert not get_task("paper-scaffold-global").protocol.is_cv  # the paper's tasks keep the holdout protocol
    quick = get_suite("quick")
    assert all(get_task(t).protocol.folds >= 3 for t in quick.tasks) and len(quick.systems) >= 2
    tuned = load_search_space(get_system("tuned-linear").search_space)
    fixed = load_search_space(get_system("paper-defaults").search_space)
    assert tuned.parameters and not fixed.parameters and not fixed.terms
    assert load_search_space(get_system("untrained-heads").search_space).trial_config({}).optim.epochs == 0
    # the same split under another protocol does not share trials
    holdout = register_task(
        {
            "name": "scaffold-global-holdout-copy",
            "description": "x",
            "split": {"name": "scaffold"},
            "protocol": "holdout",
        }
    )
    assert holdout.split_key() != get_task("scaffold-global").split_key()


@pytest.mark.parametrize(
    "suite,message",
    [
        (
            "s1:\n  description: x\n  tasks: [scaffold-global, paper-scaffold-global]\n"
            "  systems: [paper-defaults, untrained-heads]\n",
            "mixes holdout and repeated_cv",
        ),
        ("s2:\n  description: x\n  tasks: [scaffold-global]\n", "at least two 'systems'"),
        (
            "s3:\n  description: x\n  tasks: [paper-scaffold-global]\n  systems: [paper-defaults, untrained-heads]\n",
            "are holdout",
        ),
        (
            "s4:\n  description: x\n  tasks: [scaffold-global]\n  systems: [paper-default, untrained-heads]\n",
            "Did you mean 'paper-defaults'",
        ),
    ],
)
def test_suites_that_cannot_run_are_refused(tmp_path, suite, message):
    get_task("scaffold-global")  # default tasks and systems loaded
    (tmp_path / "suites.yaml").write_text(suite)
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        load_registry(tmp_path)
