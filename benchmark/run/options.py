"""The options of one `run`: one validated settings model, the flags that set it, the resume command."""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import Field

from benchmark.core.settings import Strict


class RunOptions(Strict):
    """The options of one `run`: the one settings model that the CLI, the library and the stages read.

    Suites give defaults (search space, budget, concurrency); an option set here overrides them.
    Values are validated when the options are made, so a bad flag fails before anything starts.
    """

    suite: str = "default"
    data: str | None = None
    tracking_uri: str | None = None
    output: str = "results"
    resume: bool = False
    address: str | None = None
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    num_samples: int | None = Field(None, ge=1)  # holdout: trials per split; CV: trials per fold
    time_budget_s: float | None = Field(None, gt=0)
    max_concurrent: int | None = Field(None, ge=1)
    search_space: str | None = None
    asha: bool | None = None
    seed: int = 0
    cache_dir: str | None = None
    allow_download: bool = True
    max_failures: int = Field(2, ge=0)
    storage: str | None = None  # Ray Tune's storage; None: OUTPUT/ray
    #: a system whose fits this store holds already (same system digest, folds with the same checksums, any run)
    #: reads them back instead of training again (`compare` sets it)
    reuse_fits: bool = False
    #: the MLflow UI's address for the links a run prints (None: $BENCHMARK_MLFLOW_UI or the default)
    mlflow_ui: str | None = None
    #: a verb that made the suite in-process (`compare` and its own flags): the resume command repeats it instead of
    #: `run --suite NAME`, whose generated suite a new process would not know
    command: str | None = None


#: run options and the flags that set them (messages naming the flag, the --resume command)
RUN_FLAGS = {
    "suite": "--suite",
    "data": "--data",
    "tracking_uri": "--tracking-uri",
    "output": "--output",
    "resume": "--resume",
    "address": "--address",
    "cpus_per_trial": "--cpus-per-trial",
    "gpus_per_trial": "--gpus-per-trial",
    "num_samples": "--num-samples",
    "time_budget_s": "--time-budget",
    "max_concurrent": "--max-concurrent",
    "search_space": "--search-space",
    "asha": "--asha",
    "seed": "--seed",
    "cache_dir": "--cache-dir",
    "max_failures": "--max-failures",
    "storage": "--storage",
    "reuse_fits": "--reuse-fits",
    "mlflow_ui": "--mlflow-ui",
}


def resume_command(options: RunOptions) -> str:
    """The command line that continues this run: every option that differs from its default, and --resume."""

    parts = ["python", "-m", "benchmark", *(shlex.split(options.command) if options.command else ["run"])]
    defaults = RunOptions()
    for name, flag in RUN_FLAGS.items():
        value = getattr(options, name)
        if name == "resume" or value == getattr(defaults, name):
            continue
        if options.command and name in ("suite", "reuse_fits"):  # the verb's own flags name them
            continue
        if name == "output":
            value = str(Path(value).resolve())
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, shlex.quote(str(value))]
    if not options.allow_download:
        parts.append("--offline")
    return " ".join(parts + ["--resume"])
