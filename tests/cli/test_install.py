"""Installation as a user meets it: the wheel carries the tasks and search spaces, so an installed
suite (not the checkout) lists and reads them from any directory."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end (Ray, MLflow, subprocesses): pytest -m 'not slow' skips it

REPO = Path(__file__).resolve().parents[2]


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
    # The dependencies come from the running interpreter's site-packages, whether it is a virtual environment or
    # not (`--system-site-packages` would give the base interpreter's, which a venv user's deps are not in). A .pth
    # line adds a folder without running the .pth files inside it, so the checkout's editable install stays out;
    # the suite itself comes only from the wheel.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()])
    (Path(venv_site) / "running_interpreter_deps.pth").write_text("\n".join(ours) + "\n")
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
        "import benchmark, benchmark.tasks.specs as t, benchmark.tuning.space as s; "
        "print(benchmark.__file__); print(t.tasks_dir()); print(s.spaces_dir())",
    ).split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the installed copy, not the checkout
    listed = run("-m", "benchmark", "list", "tasks")
    for task in (REPO / "tasks").glob("*.yaml"):
        if task.name != "suites.yaml" and task.name != "systems.yaml":
            assert task.stem in listed, (task.stem, listed)
    spaces = run(
        "-c",
        "from benchmark.tuning.space import available_search_spaces, load_search_space; "
        "print(available_search_spaces()); print(list(load_search_space('default').parameters))",
    )
    assert "quick" in spaces and "temperature" in spaces
