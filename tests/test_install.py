"""Installation as a user meets it: the wheel carries the tasks and search spaces, so an installed
suite (not the checkout) lists and reads them from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the dev extra's `build` builds the wheel")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the installed setuptools builds it (no index needed)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = out.glob("*.whl")
    return path


def test_wheel_ships_every_task_and_search_space(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("tasks", "search_spaces"):
        expected = {f"benchmark/bundled/{folder}/{p.name}" for p in (REPO / folder).glob("*.yaml")}
        assert expected and expected <= names, expected - names


def test_installed_wheel_lists_tasks_from_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    # the dependencies come from this interpreter's site-packages; the suite itself only from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BENCHMARK_TASKS_DIR", "BENCHMARK_SEARCH_SPACES_DIR", "PYTHONPATH")
    }

    def run(*args: str) -> str:
        done = subprocess.run([str(python), *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    where = run(
        "-c",
        "import benchmark, benchmark.tasks as t, benchmark.search_space as s; "
        "print(benchmark.__file__); print(t.tasks_dir()); print(s.spaces_dir())",
    ).split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the installed copy, not the checkout
    listed = run("-m", "benchmark", "list", "tasks")
    for task in (REPO / "tasks").glob("*.yaml"):
        if task.name != "suites.yaml" and task.name != "systems.yaml":
            assert task.stem in listed, (task.stem, listed)
    spaces = run(
        "-c",
        "from benchmark.search_space import available_search_spaces, load_search_space; "
        "print(available_search_spaces()); print(list(load_search_space('default').parameters))",
    )
    assert "quick" in spaces and "temperature" in spaces
