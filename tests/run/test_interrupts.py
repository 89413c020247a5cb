"""Ctrl-C and time budgets on a real `python -m benchmark run` (subprocess, tiny suite, slow trials); the
`--resume` after each stop runs the same command in the test process (`cli_in_process`, conftest.py).

After every stop the counts agree: results.json, Optuna's study and MLflow's runs; no MLflow run is left
RUNNING; `--resume` finishes the run with every trial once; `--resume` on a finished run logs nothing.
"""

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest
from suite_helpers import TINY_SPACE, run_command, write_cv_suite, write_suite

pytestmark = pytest.mark.slow  # end to end (Ray, MLflow, subprocesses): pytest -m 'not slow' skips it


@pytest.fixture
def slow_suite(request, tmp_path, tiny_csv):
    epochs = getattr(request, "param", 300)  # trials of a second or two; finals of 2 seeds x epochs
    space = {**TINY_SPACE, "base": {**TINY_SPACE["base"], "optim": {"epochs": epochs, "batch_size": 16}}}
    # one final seed: the finals are what a resume must finish, not what these tests are about
    folder = write_suite(
        tmp_path / "tasks", tiny_csv, space=space, samples=4, name="slow", prefix="slow", final_seeds=(0,)
    )
    args = run_command("slow", tmp_path, "--max-concurrent", "1")
    return {
        "args": args,
        "env": {**os.environ, "BENCHMARK_TASKS_DIR": str(folder)},
        "out": tmp_path / "out",
        "db": tmp_path / "mlflow.db",
        "log": tmp_path / "run.log",
    }


def start(suite, *extra):
    log = open(suite["log"], "w")
    return subprocess.Popen(
        suite["args"] + list(extra), env=suite["env"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_for(suite, proc, text: str, count: int = 1, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if suite["log"].read_text().count(text) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"never saw {text!r} x{count}:\n" + suite["log"].read_text()[-3000:])


def sql(path, query):
    with sqlite3.connect(path) as db:
        return dict(db.execute(query).fetchall())


def mlflow_status(suite) -> dict:
    return sql(suite["db"], "select status, count(*) from runs group by status")


def stages(suite) -> dict:
    return sql(suite["db"], "select value, count(*) from tags where key = 'stage' group by value")


def optuna_states(suite) -> dict:
    return sql(suite["out"] / "optuna.db", "select state, count(*) from trials group by state")


def test_first_ctrl_c_stops_honestly_and_resume_finishes_once(slow_suite, cli_in_process):
    proc = start(slow_suite)
    wait_for(slow_suite, proc, "trials: ", 1)
    time.sleep(2)  # the second trial is training
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    assert proc.wait(timeout=120) == 130
    log = slow_suite["log"].read_text()
    assert "resume with: " in log and "--resume" in log.split("resume with: ")[-1]
    results = json.loads((slow_suite["out"] / "results.json").read_text())
    counts = results["tasks"]["slow-global"]["trials"]
    assert counts["finished"] >= 1 and counts["finished"] + counts["interrupted"] < 4 + 1
    assert "final" not in results["tasks"]["slow-global"]  # no unfinished trial selected, no final after Ctrl-C
    optuna = optuna_states(slow_suite)  # interrupted trials failed (marked), never left RUNNING
    assert optuna.get("COMPLETE", 0) == counts["finished"] and optuna.get("FAIL", 0) == counts["interrupted"]
    assert "RUNNING" not in optuna
    assert stages(slow_suite)["trial"] == 2 * counts["finished"]  # two tasks share each trial
    assert "RUNNING" not in mlflow_status(slow_suite)

    done = cli_in_process(slow_suite["args"] + ["--resume"], slow_suite["env"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # the budget of 4 completed, the interrupted trials' reruns among them (same parameters, `rerun_of` set)
    assert optuna_states(slow_suite) == {
        "COMPLETE": 4,
        **({"FAIL": counts["interrupted"]} if counts["interrupted"] else {}),
    }
    reruns = sql(
        slow_suite["out"] / "optuna.db", "select 'n', count(*) from trial_user_attributes where key = 'rerun_of'"
    )
    assert reruns.get("n", 0) == counts["interrupted"]
    assert stages(slow_suite) == {"task": 2, "trial": 8, "final": 2}
    assert set(mlflow_status(slow_suite)) == {"FINISHED"}
    metrics_before = sql(slow_suite["db"], "select 'n', count(*) from metrics")

    again = cli_in_process(slow_suite["args"] + ["--resume"], slow_suite["env"])
    assert again.returncode == 0 and "had already finished: nothing was run or logged again" in again.stdout
    assert sql(slow_suite["db"], "select 'n', count(*) from metrics") == metrics_before
    assert stages(slow_suite) == {"task": 2, "trial": 8, "final": 2}


@pytest.mark.parametrize("slow_suite", [600], indirect=True)
def test_second_ctrl_c_exits_at_once_and_the_run_still_resumes(slow_suite, cli_in_process):
    proc = start(slow_suite, "--num-samples", "1")  # one trial: the finals are what this test interrupts
    wait_for(slow_suite, proc, "final: ")  # the finals train now: 2 seeds x 600 epochs
    proc.send_signal(signal.SIGINT)
    wait_for(slow_suite, proc, "Ctrl-C again to exit at once")
    started = time.time()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert time.time() - started < 20
    assert "final" not in stages(slow_suite)  # cut short, not waited for: no final was logged
    assert "interrupted again: stopped at once" in slow_suite["log"].read_text()
    assert "RUNNING" not in mlflow_status(slow_suite)
    done = cli_in_process(slow_suite["args"] + ["--num-samples", "1", "--resume"], slow_suite["env"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert stages(slow_suite) == {"task": 2, "trial": 2, "final": 2}


def test_ctrl_c_pressed_quickly_several_times_exits_without_a_traceback(slow_suite):
    """Three Ctrl-C within half a second mid-study: exit 130 at once, no traceback (Ray's shutdown used to print
    a KeyboardInterrupt), and the state files are whole."""
    proc = start(slow_suite)
    wait_for(slow_suite, proc, "trials: ", 1)
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.15)
    assert proc.wait(timeout=60) == 130
    log = slow_suite["log"].read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    assert "resume with: " in log
    state = json.loads((slow_suite["out"] / "run_state.json").read_text())  # whole JSON, with its run id
    assert state["run_uid"] and optuna_states(slow_suite)  # the Optuna store opens and has the trials
    assert "RUNNING" not in mlflow_status(slow_suite)


def test_a_time_budget_ends_the_study_and_is_reported(slow_suite, cli_in_process):
    done = cli_in_process(slow_suite["args"] + ["--time-budget", "1"], slow_suite["env"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    counts = json.loads((slow_suite["out"] / "results.json").read_text())["tasks"]["slow-global"]["trials"]
    assert counts["stopped_by"] == "time budget" and counts["planned"] == 4
    assert 1 <= counts["finished"] < 4 and counts["failed"] == counts["interrupted"] == 0
    assert "stopped by the time budget" in done.stdout and "time budget of 1s reached" in done.stdout
    assert optuna_states(slow_suite) == {"COMPLETE": counts["finished"]}  # running trials finished, none cut short
    assert stages(slow_suite)["trial"] == 2 * counts["finished"]
    assert set(mlflow_status(slow_suite)) == {"FINISHED"}


def test_ctrl_c_during_repeated_cv_tuning_stops_and_resume_finishes(tmp_path, tiny_csv, cli_in_process):
    """The CV path: Ctrl-C while a system is tuned per fold; resume gives every fold its budget and every
    (system, fold) one fit."""
    folder = write_cv_suite(tmp_path / "tasks", tiny_csv, name="intcv", folds=2, budget=2, epochs=120, batch_size=16)
    suite = {
        "args": run_command("intcv", tmp_path, "--max-concurrent", "1"),
        "env": {**os.environ, "BENCHMARK_TASKS_DIR": str(folder)},
        "out": tmp_path / "out",
        "db": tmp_path / "mlflow.db",
        "log": tmp_path / "run.log",
    }
    proc = start(suite)
    wait_for(suite, proc, "trials: ", 2)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert "resume with: " in suite["log"].read_text()
    assert json.loads((suite["out"] / "results.json").read_text())["interrupted"]["where"].startswith(
        "tuning intcv-tuned"
    )
    assert "RUNNING" not in mlflow_status(suite)
    done = cli_in_process(suite["args"] + ["--resume"], suite["env"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    per_study = sql(
        suite["out"] / "optuna.db",
        "select s.study_name, count(*) from trials t join studies s "
        "on s.study_id = t.study_id where t.state = 'COMPLETE' group by s.study_name",
    )
    assert sorted(per_study.values()) == [2, 2]  # two folds, each its budget, none twice
    assert stages(suite)["fit"] == 2 * 2 * 2 and set(mlflow_status(suite)) == {"FINISHED"}  # tasks x systems x folds


def test_sigterm_to_the_process_group_stops_like_a_first_ctrl_c(slow_suite):
    """A scheduler's or `timeout`'s stop: it used to abort (exit 134, Ray's stack dump) with runs left RUNNING."""
    proc = start(slow_suite)
    wait_for(slow_suite, proc, "trials: ", 1)
    time.sleep(2)  # the second trial is training
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 143  # 128 + SIGTERM
    log = slow_suite["log"].read_text()
    assert "SIGTERM received" not in log and "Aborted" not in log
    assert "SIGTERM: " in log and "Ctrl-C:" not in log  # the message names the signal that came
    assert "--resume" in log.split("resume with: ")[-1]
    counts = json.loads((slow_suite["out"] / "results.json").read_text())["tasks"]["slow-global"]["trials"]
    assert counts["finished"] >= 1 and optuna_states(slow_suite).get("COMPLETE", 0) == counts["finished"]
    assert "RUNNING" not in optuna_states(slow_suite) and "RUNNING" not in mlflow_status(slow_suite)
