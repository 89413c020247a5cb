"""Checks before a run creates anything, and where a resumed run writes (`benchmark.run.preflight`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.core.errors import BenchmarkError, ConfigError
from benchmark.run.options import RunOptions
from benchmark.run.preflight import Locations, check_before_start, new_locations, resumed_locations
from benchmark.tracking.store import check_tracking_uri


def recorded(output: Path, uri: str, storage: str | None = None) -> dict:
    return Locations(uri, storage).record(output)


def test_a_store_inside_the_run_folder_moves_with_it(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    record = recorded(old, f"sqlite:///{old / 'mlflow.db'}")
    assert record["tracking_in_output"] == "mlflow.db"
    here = resumed_locations(RunOptions(resume=True), new, record)
    assert here.tracking_uri == f"sqlite:///{new / 'mlflow.db'}" and here.storage is None
    same = resumed_locations(RunOptions(resume=True, tracking_uri=f"sqlite:///{new / 'mlflow.db'}"), new, record)
    assert same.tracking_uri == here.tracking_uri
    with pytest.raises(ConfigError, match="is not the MLflow store this run writes to"):
        resumed_locations(RunOptions(resume=True, tracking_uri=f"sqlite:///{old / 'mlflow.db'}"), new, record)


def test_a_store_outside_a_moved_run_folder_must_be_named(tmp_path):
    old, new, db = tmp_path / "old", tmp_path / "new", tmp_path / "mlflow.db"
    record = recorded(old, f"sqlite:///{db}")
    assert resumed_locations(RunOptions(resume=True), old, record).tracking_uri == f"sqlite:///{db}"
    with pytest.raises(ConfigError, match="moved or copied from .* would write into the original's store"):
        resumed_locations(RunOptions(resume=True), new, record)
    mine = f"sqlite:///{tmp_path / 'copy.db'}"
    chosen = resumed_locations(RunOptions(resume=True, tracking_uri=mine), new, record)
    assert chosen.tracking_uri == mine and "resuming into MLflow store" in chosen.note
    with pytest.raises(ConfigError, match="one run's trials would be split over two stores"):
        resumed_locations(RunOptions(resume=True, tracking_uri=mine), old, record)
    server = recorded(old, "http://127.0.0.1:5000")
    assert resumed_locations(RunOptions(resume=True), new, server).tracking_uri == "http://127.0.0.1:5000"


def test_a_resume_keeps_its_tune_storage(tmp_path):
    out, shared = tmp_path / "out", tmp_path / "shared"
    record = recorded(out, "http://127.0.0.1:5000", str(shared))
    assert resumed_locations(RunOptions(resume=True), out, record).storage == str(shared)
    with pytest.raises(ConfigError, match="is not where this run keeps Ray Tune's state"):
        resumed_locations(RunOptions(resume=True, storage=str(tmp_path / "elsewhere")), out, record)
    default = recorded(out, "http://127.0.0.1:5000")
    with pytest.raises(ConfigError, match="keeps Ray Tune's state in .*/out/ray, not in --storage"):
        resumed_locations(RunOptions(resume=True, storage=str(shared)), out, default)


def test_relative_sqlite_paths_are_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert new_locations(RunOptions(tracking_uri="sqlite:///a.db")).tracking_uri == f"sqlite:///{tmp_path / 'a.db'}"


def test_an_output_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_before_start(RunOptions(output=str(tmp_path / "f")), tmp_path / "f")


def test_a_trial_larger_than_this_machine_is_refused_before_ray_starts(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # no Ray of another test in this process: the local check
    with pytest.raises(ConfigError, match="asks for 1000 CPU but this machine has"):
        check_before_start(RunOptions(cpus_per_trial=1000), tmp_path / "o")


def test_a_database_uri_without_its_driver_names_the_package(tmp_path):
    with pytest.raises(BenchmarkError, match="database driver is not installed .*pip install psycopg2-binary"):
        check_tracking_uri("postgresql://user:secret@127.0.0.1/db")
    with pytest.raises(BenchmarkError) as caught:
        check_tracking_uri("postgresql://user:secret@127.0.0.1/db")
    assert "secret" not in str(caught.value)


def test_read_only_places_are_refused_for_output_and_store(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("mounting a read-only tmpfs needs root")
    try:
        with pytest.raises(ConfigError, match="read-only file system"):
            check_before_start(RunOptions(output=str(ro / "out")), ro / "out")
        with pytest.raises(BenchmarkError, match="read-only file system; pass a --tracking-uri"):
            check_tracking_uri(f"sqlite:///{ro / 'x.db'}")
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


@pytest.mark.parametrize(
    "problem, message",
    [
        ({"space": {"mol_encoder/name": {"type": "categorical", "choices": ["ecfp4", "ecfp5x"]}}}, "unknown encoder"),
        ({"space": {"text_encoder/name": {"type": "categorical", "choices": ["ecfp4"]}}}, "is a molecule encoder"),
        ({"address": "127.0.0.1:1"}, "127.0.0.1:1"),
        ({"output_is_file": True}, "is a file, not a folder"),
    ],
)
def test_a_run_refuses_bad_input_before_it_creates_a_store_or_starts_ray(problem, message, tmp_path, tiny_csv):
    from suite_helpers import TINY_SPACE, write_suite

    from benchmark.run.suite import run_suite
    from benchmark.tasks.specs import scoped_registry

    space = {**TINY_SPACE, "parameters": {**TINY_SPACE["parameters"], **problem.get("space", {})}}
    folder = write_suite(tmp_path / "tasks", tiny_csv, space=space, name="pre", prefix="pre")
    output = tmp_path / "out"
    if problem.get("output_is_file"):
        output.write_text("not a folder")
    options = RunOptions(
        suite="pre",
        tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        output=str(output),
        address=problem.get("address"),
        allow_download=False,
    )
    ray = sys.modules.get("ray")
    running = ray is not None and ray.is_initialized()
    with pytest.MonkeyPatch.context() as patch, scoped_registry():
        patch.setenv("BENCHMARK_TASKS_DIR", str(folder))
        with pytest.raises(BenchmarkError, match=message):
            run_suite(options)
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "m.db.lock").exists()
    assert not (output.is_dir() and any(output.iterdir()))
    assert running or sys.modules.get("ray") is None or not sys.modules["ray"].is_initialized()


def test_flags_a_protocol_would_ignore_are_refused():
    from benchmark.run.preflight import check_flags_apply
    from benchmark.tasks.specs import get_suite

    with pytest.raises(ConfigError, match="--search-space does not apply to suite 'quick'"):
        check_flags_apply(RunOptions(suite="quick", search_space="linear"), get_suite("quick"))
    with pytest.raises(ConfigError, match="--reuse-fits does not apply to suite 'paper'"):
        check_flags_apply(RunOptions(suite="paper", reuse_fits=True), get_suite("paper"))
    check_flags_apply(RunOptions(suite="paper", search_space="linear"), get_suite("paper"))  # holdout: it applies
