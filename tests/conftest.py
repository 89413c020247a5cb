"""Shared fixtures: the real ChEMBL snapshot (from ../shared), tiny pair files, an isolated cache, one tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO.parent / "shared" / "data" / "chembl" / "approved_drug_mechanisms.csv"
FIXTURES = Path(__file__).parent / "fixtures"


def session_folder(tmp_path_factory, name: str):
    """A folder of this test session: under pytest-xdist, one that every worker of the session shares."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / name
        root.mkdir(exist_ok=True)
        return root
    return tmp_path_factory.mktemp(name)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test writes embeddings to a session-private cache, never the user's. Under pytest-xdist the workers of
    one session share it (cache files are written atomically), so each text is encoded once per session."""
    root = session_folder(tmp_path_factory, "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHMARK_CACHE", str(root))
        # the key that signs Ray Tune's saved state: the session's own, never the user's (subprocesses inherit it)
        patch.setenv("BENCHMARK_STATE_KEY_FILE", str(session_folder(tmp_path_factory, "state-key") / "state.key"))
        yield root


@pytest.fixture(scope="session")
def snapshot_path() -> Path:
    if not SNAPSHOT.exists():
        pytest.fail(f"the ChEMBL snapshot is expected at {SNAPSHOT} (../shared beside the repository)")
    return SNAPSHOT


@pytest.fixture(scope="session")
def snapshot(snapshot_path):
    from benchmark.data import load_dataset

    return load_dataset(snapshot_path)


@pytest.fixture(scope="session")
def tiny_frame(snapshot_path) -> pd.DataFrame:
    """~120 real rows of the snapshot: a few targets with several drugs each, plus singletons."""
    frame = pd.read_csv(snapshot_path, dtype=str)
    frame = frame[frame["has_structure"] == "True"]
    busy = frame["target_chembl_id"].value_counts()
    targets = busy[busy >= 4].index[:12].tolist()
    part = frame[frame["target_chembl_id"].isin(targets)].groupby("target_chembl_id").head(8)
    rest = frame[~frame["target_chembl_id"].isin(targets)].head(30)
    return pd.concat([part, rest]).reset_index(drop=True)


@pytest.fixture
def tiny_csv(tmp_path, tiny_frame) -> Path:
    path = tmp_path / "tiny.csv"
    tiny_frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tiny_frame, tmp_path_factory):
    from benchmark.data import load_dataset

    path = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    tiny_frame.to_csv(path, index=False)
    return load_dataset(path)


def start_local_ray() -> None:
    """A quiet local 2-CPU Ray in this test process, without prestarted workers (as `init_ray` starts one)."""
    import ray

    from benchmark.cluster.ray_cluster import NO_PRESTART

    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, _system_config=NO_PRESTART
    )


@pytest.fixture
def cli_in_process(monkeypatch, capsys):
    """`subprocess.run(args, env=env)` of a `python -m benchmark ...` command, run by `main` in this test process
    instead: the tests that stop a real run (a signal, a kill) resume it this way, without paying for a second
    interpreter's imports. The command's environment is applied for the call; a local Ray that the command
    starts is stopped after it, one it found running is left. Task names are process-wide, like any registry's: the
    tasks, systems and suites the command registers from its folder are forgotten after it."""
    import ray

    from benchmark.cli.main import main
    from benchmark.tasks.specs import scoped_registry

    def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        assert args[:3] == [sys.executable, "-m", "benchmark"], args
        with monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                if os.environ.get(name) != value:
                    patch.setenv(name, value)
            had_ray = ray.is_initialized()
            capsys.readouterr()
            try:
                with scoped_registry():
                    code = main(args[3:])
            finally:
                if not had_ray:
                    ray.shutdown()
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


@pytest.fixture(scope="module")
def ray_local():
    """A local 2-CPU Ray for one test module."""
    import ray

    ray.shutdown()
    start_local_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_suite_folder(tmp_path_factory, tiny_frame):
    """One folder for the session: task names are global, like any registry's."""
    from suite_helpers import TINY_SPACE, write_suite

    root = tmp_path_factory.mktemp("tiny-suite")
    tiny_frame.to_csv(root / "tiny.csv", index=False)
    return write_suite(root / "tasks", root / "tiny.csv", space=TINY_SPACE)


@pytest.fixture(scope="module")
def tiny_suite(tiny_suite_folder):
    """The tiny suite 'tiny' (tasks tiny-global, tiny-grouped) as the task folder of one module."""
    folder = tiny_suite_folder
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHMARK_TASKS_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_run(tiny_suite_folder, tmp_path_factory):
    """One `run` of the tiny suite per test session, for the tests that only read what it logged and wrote (its
    MLflow store, results.json, progress lines): under pytest-xdist the first worker to ask runs it, the others wait
    on a file lock, then read it. A test that changes a store works on a copy, or runs its own."""
    import ray

    from benchmark.run.options import RunOptions
    from benchmark.run.suite import run_suite

    root = session_folder(tmp_path_factory, "tiny-run")
    done = root / "done.json"
    with FileLock(str(root / "run.lock")):
        if not done.exists():
            lines: list[str] = []
            started_ray = not ray.is_initialized()
            if started_ray:
                start_local_ray()
            try:
                with pytest.MonkeyPatch.context() as patch:
                    patch.setenv("BENCHMARK_TASKS_DIR", str(tiny_suite_folder))
                    uri, out = f"sqlite:///{root / 'mlflow.db'}", str(root / "out")
                    options = RunOptions(suite="tiny", tracking_uri=uri, output=out, allow_download=False)
                    results = run_suite(options, progress=lines.append)
            finally:
                if started_ray:
                    ray.shutdown()
            done.write_text(json.dumps({"results": results, "progress": lines}))
    saved = json.loads(done.read_text())
    return {"uri": f"sqlite:///{root / 'mlflow.db'}", "out": root / "out", **saved}
