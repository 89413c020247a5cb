"""Tiny suites for tests of `run` and `report`: a slice of the real snapshot, TF-IDF text, short trials."""

import os
import shutil
import sys
from pathlib import Path

import yaml
from filelock import FileLock


def write_suite(
    folder: Path,
    data: Path,
    *,
    space: dict,
    samples: int = 4,
    name: str = "tiny",
    prefix: str = "tiny",
    final_seeds: tuple[int, ...] = (0, 1),
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    common = {
        "dataset": {"source": "file", "path": str(data), "text_field": "text_rich"},
        "split": {"name": "random", "fractions": [0.6, 0.2, 0.2], "seed": 0},
        "bootstrap": {"n_boot": 200, "seed": 0},
        "final_seeds": list(final_seeds),
    }
    for mode in ("global", "grouped"):
        (folder / f"{prefix}-{mode}.yaml").write_text(
            yaml.safe_dump(
                {"name": f"{prefix}-{mode}", "description": f"tiny {mode} task", "retrieval": mode, **common}
            )
        )
    space_path = folder.parent / f"{name}-space.yaml"
    space_path.write_text(yaml.safe_dump({"name": f"{name}-space", **space}))
    (folder / "suites.yaml").write_text(
        yaml.safe_dump(
            {
                name: {
                    "description": "tiny test suite",
                    "tasks": [f"{prefix}-global", f"{prefix}-grouped"],
                    "search_space": str(space_path),
                    "num_samples": samples,
                    "eval_every": 5,
                }
            }
        )
    )
    return folder


TINY_SPACE = {
    "base": {"text_encoder": {"name": "tfidf"}, "bridge": {"dim": 32}, "optim": {"epochs": 10, "batch_size": 64}},
    "parameters": {"loss/temperature": {"type": "float", "low": 0.03, "high": 0.2, "log": True}},
    "terms": {"margin": {"loss/margin": {"type": "float", "low": 0.05, "high": 0.3}}},
}


def write_cv_suite(
    folder: Path,
    data: Path,
    *,
    name: str = "tinycv",
    folds: int = 3,
    repeats: int = 1,
    budget: int = 2,
    split: str = "random",
    epochs: int = 10,
    batch_size: int = 64,
    halving: bool = False,
) -> Path:
    """A repeated-CV suite: a fixed system (untrained heads) against a system tuned per fold (TF-IDF text)."""
    folder.mkdir(parents=True, exist_ok=True)
    common = {
        "dataset": {"source": "file", "path": str(data), "text_field": "text_rich"},
        "split": {"name": split, "seed": 0},
        "protocol": {"kind": "repeated_cv", "folds": folds, "repeats": repeats, "inner_val_fraction": 0.25},
    }
    for mode in ("global", "grouped"):
        (folder / f"{name}-{mode}.yaml").write_text(
            yaml.safe_dump(
                {"name": f"{name}-{mode}", "description": f"tiny cv {mode} task", "retrieval": mode, **common}
            )
        )
    base = {**TINY_SPACE["base"], "optim": {"epochs": epochs, "batch_size": batch_size}}
    spaces = {
        "fixed": {"base": {**base, "optim": {**base["optim"], "epochs": 0}}},
        "tuned": {**TINY_SPACE, "base": base},
    }
    for kind, space in spaces.items():
        (folder.parent / f"{name}-{kind}.yaml").write_text(yaml.safe_dump({"name": f"{name}-{kind}", **space}))
    (folder / "systems.yaml").write_text(
        yaml.safe_dump(
            {
                f"{name}-untrained": {
                    "description": "untrained heads",
                    "search_space": str(folder.parent / f"{name}-fixed.yaml"),
                },
                f"{name}-tuned": {
                    "description": "tuned per fold",
                    "search_space": str(folder.parent / f"{name}-tuned.yaml"),
                    "num_samples": budget,
                    "successive_halving": halving,
                },
            }
        )
    )
    (folder / "suites.yaml").write_text(
        yaml.safe_dump(
            {
                name: {
                    "description": "tiny cv suite",
                    "tasks": [f"{name}-global", f"{name}-grouped"],
                    "systems": [f"{name}-untrained", f"{name}-tuned"],
                    "eval_every": 5,
                }
            }
        )
    )
    return folder


def empty_store(path: Path) -> str:
    """An empty MLflow sqlite store at `path` (its URI), copied from one that MLflow built once per test session.

    MLflow builds a new store by running its ~50 schema migrations, about 2 s of CPU in the process that opens it
    first; the runs of these tests check what they log, not that MLflow can create a store (the session's shared
    tiny run and the in-process runs still let MLflow create theirs). The template lives in the session's cache
    folder (conftest's `isolated_cache`), built under a file lock that the xdist workers share."""
    from mlflow.tracking import MlflowClient  # mlflow: heavy, imported by the tests that run a suite

    template = Path(os.environ["BENCHMARK_CACHE"]) / "mlflow-empty.db"
    with FileLock(f"{template}.lock"):
        if not template.exists():
            building = template.with_name("mlflow-building.db")
            building.unlink(missing_ok=True)
            MlflowClient(f"sqlite:///{building}").search_experiments()  # runs the migrations
            building.rename(template)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def run_command(suite: str, root: Path, *extra: str) -> list[str]:
    """`python -m benchmark run` of `suite` with its MLflow store (empty, see `empty_store`) and output folder under
    `root`, offline."""
    uri = empty_store(root / "mlflow.db")
    return [sys.executable, "-m", "benchmark", "run", "--suite", suite, "--tracking-uri", uri,
            "--output", str(root / "out"), *extra, "--offline"]  # fmt: skip
