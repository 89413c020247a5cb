"""A resumed run writes where it says and trusts no state it did not sign; a full disk stops a run that then
resumes. One interrupted `python -m benchmark run` (subprocess, tiny suite, slow trials) serves the store and
copy cases; the resumes run in the test process (`cli_in_process`, conftest.py)."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from suite_helpers import TINY_SPACE, empty_store, write_suite

pytestmark = pytest.mark.slow  # end to end (Ray, MLflow, subprocesses): pytest -m 'not slow' skips it


class CreatesAFile:
    """A pickle payload: unpickling it creates a file (what an attacker's `tuner.pkl` would do)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stages(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        return dict(con.execute("select value, count(*) from tags where key = 'stage' group by value").fetchall())


def statuses(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        return dict(con.execute("select status, count(*) from runs group by status").fetchall())


def slow_run(tmp_path: Path, tiny_csv: Path, out: Path, uri: str, name: str = "safe"):
    space = {**TINY_SPACE, "base": {**TINY_SPACE["base"], "optim": {"epochs": 300, "batch_size": 16}}}
    folder = write_suite(tmp_path / "tasks", tiny_csv, space=space, samples=4, name=name, prefix=name, final_seeds=(0,))
    env = {**os.environ, "BENCHMARK_TASKS_DIR": str(folder)}
    args = [sys.executable, "-m", "benchmark", "run", "--suite", name, "--output", str(out), "--max-concurrent", "1",
            "--offline"]  # fmt: skip
    return args, ["--tracking-uri", uri], env


def start_and_wait(args, env, log: Path, text: str = "trials: ", timeout: float = 240) -> subprocess.Popen:
    with open(log, "w") as handle:
        proc = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if text in log.read_text():
            return proc
        time.sleep(0.5)
    raise AssertionError(f"never saw {text!r}:\n{log.read_text()[-3000:]}")


def test_a_resume_writes_where_the_run_lives_and_trusts_no_state_it_did_not_sign(tmp_path, tiny_csv, cli_in_process):
    out = tmp_path / "a" / "out"
    uri = empty_store(out / "mlflow.db")  # the store lives inside the run folder
    args, tracking, env = slow_run(tmp_path, tiny_csv, out, uri)
    proc = start_and_wait(args + tracking, env, tmp_path / "run.log")
    time.sleep(2)  # the second trial is training
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, (tmp_path / "run.log").read_text()[-3000:]
    (tmp_path / "copy").mkdir()
    shutil.copytree(out, tmp_path / "copy" / "out")
    before = {name: digest(out / name) for name in ("mlflow.db", "optuna.db", "run_state.json")}

    # another store on --resume: refused, naming both, before anything is created
    other = tmp_path / "b.db"
    refused = cli_in_process(args + ["--tracking-uri", f"sqlite:///{other}", "--resume"], env)
    assert refused.returncode == 2
    assert str(other) in refused.stderr and str(out / "mlflow.db") in refused.stderr
    assert not other.exists() and "Traceback" not in refused.stderr

    # a tampered tuner.pkl (in another copy): refused in one line, nothing in it runs
    evil = tmp_path / "evil" / "out"
    shutil.copytree(out, evil)
    marker = tmp_path / "code-ran"
    tuner_pkl = next(evil.glob("ray/*/tuner.pkl"))
    tuner_pkl.write_bytes(pickle.dumps(CreatesAFile(marker)))
    tampered = cli_in_process([*args[:-4], str(evil), *args[-3:], "--resume"], env)
    assert tampered.returncode == 2, tampered.stderr[-2000:]
    assert "tuner.pkl does not match its signature" in tampered.stderr and "Traceback" not in tampered.stderr
    assert not marker.exists()
    assert digest(evil / "run_state.json") == before["run_state.json"]  # refused before the run started

    # the copied folder resumes against its own store and Optuna studies; the original is not touched
    copy = tmp_path / "copy" / "out"
    done = cli_in_process([*args[:-4], str(copy), *args[-3:], "--resume"], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert {name: digest(out / name) for name in before} == before
    assert stages(copy / "mlflow.db") == {"task": 2, "trial": 8, "final": 2}
    assert set(statuses(copy / "mlflow.db")) == {"FINISHED"}
    with sqlite3.connect(copy / "optuna.db") as con:
        assert dict(con.execute("select state, count(*) from trials group by state").fetchall())["COMPLETE"] == 4


def test_a_disk_that_fills_mid_run_stops_it_cleanly_and_the_resume_finishes_it(tmp_path, tiny_csv, cli_in_process):
    """--output on a small tmpfs that a filler file fills mid-study: one line with the path and the free space,
    exit 2, no MLflow run left RUNNING, the state saved last intact; once space is freed the printed --resume
    finishes with every trial once (it used to lose the completed trials to a truncated Tune state)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)]).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        out, db = disk / "out", tmp_path / "mlflow.db"
        args, tracking, env = slow_run(tmp_path, tiny_csv, out, empty_store(db), name="full")
        log = tmp_path / "run.log"
        proc = start_and_wait(args + tracking, env, log)
        with open(disk / "filler", "wb") as filler:
            with pytest.raises(OSError):
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
        assert proc.wait(timeout=240) == 2, log.read_text()[-3000:]
        text = log.read_text()
        assert "free" in text and "resume with: " in text and "Traceback" not in text, text[-3000:]
        assert "RUNNING" not in statuses(db)
        (disk / "filler").unlink()
        done = cli_in_process(args + tracking + ["--resume"], env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert stages(db) == {"task": 2, "trial": 8, "final": 2}  # every trial once: none lost, none twice
        assert set(statuses(db)) == {"FINISHED"}
        with sqlite3.connect(out / "optuna.db") as con:
            assert dict(con.execute("select state, count(*) from trials group by state").fetchall())["COMPLETE"] == 4
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
