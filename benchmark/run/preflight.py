"""What a run checks before it creates a file or starts Ray, and where a resumed run writes.

Every check here is one line and exit 2 on failure, before the output folder, the tracking store or Ray exists:
the output folder, the tracking URI (its form, its driver, a folder that can be written), a cluster address,
trial sizes a local Ray cannot hold.

Where a run writes is recorded in its `run_state.json` when it starts (`Locations.record`): the tracking store
(relative to the run folder when it lies inside it) and Ray Tune's storage. A resume writes there, never
somewhere else silently: a `--tracking-uri` or `--storage` that differs is refused with both named, and a run
folder copied or moved elsewhere resumes against its own copies, never against the original folder's files.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.cluster.ray_cluster import check_can_join, is_uri
from benchmark.core.errors import ConfigError
from benchmark.core.io import unwritable
from benchmark.run.options import RunOptions
from benchmark.tasks.specs import SuiteSpec
from benchmark.tracking.store import check_tracking_uri, default_tracking_uri

SQLITE = "sqlite:///"


def check_output(output: Path) -> None:
    """The output folder can be made or written: not a file, not on a read-only disk, not someone else's."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file, not a folder; name a folder (it is created if missing)")
    problem = unwritable(output / "run_state.json")
    if problem:
        raise ConfigError(f"--output {output}: {problem}; choose another --output")


def check_cluster_and_resources(options: RunOptions) -> None:
    """A cluster address that answers; on a local Ray, trial sizes this machine can hold (a cluster's totals are
    checked once joined)."""
    address = options.address or os.environ.get("RAY_ADDRESS")
    if address:
        check_can_join(address)
        return
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # a Ray this process already runs: its totals, checked later
        return
    cpus = os.cpu_count() or 1
    if options.cpus_per_trial > cpus:
        raise ConfigError(
            f"each trial asks for {options.cpus_per_trial:g} CPU but this machine has {cpus}; lower "
            "--cpus-per-trial, or join a larger cluster with --address"
        )
    if options.gpus_per_trial:
        gpus = torch.cuda.device_count()
        if options.gpus_per_trial > gpus:
            raise ConfigError(
                f"each trial asks for {options.gpus_per_trial:g} GPU but this machine has {gpus}; lower "
                "--gpus-per-trial, or join a cluster with GPUs with --address"
            )


def absolute_uri(uri: str) -> str:
    """A sqlite URI with its path made absolute (relative ones are relative to the working directory)."""
    return f"{SQLITE}{Path(uri[len(SQLITE) :]).resolve()}" if uri.startswith(SQLITE) else uri


@dataclass(frozen=True)
class Locations:
    """Where a run writes: its MLflow store and Ray Tune's storage (None: OUTPUT/ray)."""

    tracking_uri: str
    storage: str | None
    note: str | None = None  # what a resume chose, to say

    def record(self, output: Path) -> dict:
        """The form kept in run_state.json: a store inside the run folder relative to it."""
        entry: dict = {"output": str(output), "tracking_uri": self.tracking_uri, "storage": self.storage}
        inside = _inside(self.tracking_uri, output)
        if inside is not None:
            entry["tracking_in_output"] = inside
        if self.storage and not is_uri(self.storage) and _relative(Path(self.storage), output) is not None:
            entry["storage_in_output"] = _relative(Path(self.storage), output)
        return entry


def _relative(path: Path, folder: Path) -> str | None:
    try:
        return str(path.resolve().relative_to(folder))
    except ValueError:
        return None


def _inside(uri: str, output: Path) -> str | None:
    return _relative(Path(uri[len(SQLITE) :]), output) if uri.startswith(SQLITE) else None


def _storage(options: RunOptions) -> str | None:
    storage = options.storage
    return storage if not storage or is_uri(storage) else str(Path(storage).resolve())


def new_locations(options: RunOptions) -> Locations:
    return Locations(
        absolute_uri(check_tracking_uri(options.tracking_uri or default_tracking_uri())), _storage(options)
    )


def resumed_locations(options: RunOptions, output: Path, recorded: dict | None) -> Locations:
    """Where a resumed run writes: where it wrote before (its folder's own copies when the folder moved), or an
    error naming both places when the options ask for another."""
    given_uri = absolute_uri(check_tracking_uri(options.tracking_uri)) if options.tracking_uri else None
    if not recorded:  # a state file from before locations were recorded: the options, as before
        return Locations(given_uri or absolute_uri(check_tracking_uri(default_tracking_uri())), _storage(options))
    moved = Path(recorded["output"]) != output
    was = f" (the run started in {recorded['output']})" if moved else ""
    if recorded.get("tracking_in_output"):
        expected_uri = f"{SQLITE}{output / recorded['tracking_in_output']}"
    else:
        expected_uri = recorded["tracking_uri"]
    note, outside = None, not recorded.get("tracking_in_output")
    if given_uri is None:
        if moved and outside and expected_uri.startswith(SQLITE):
            raise ConfigError(
                f"this run folder was moved or copied from {recorded['output']} to {output}, and its MLflow store "
                f"{expected_uri} lies outside it: resuming would write into the original's store; pass "
                "--tracking-uri naming the store that belongs to this copy"
            )
        tracking_uri = expected_uri
    elif given_uri == expected_uri:
        tracking_uri = given_uri
    elif moved and outside and expected_uri.startswith(SQLITE):
        tracking_uri, note = given_uri, f"resuming into MLflow store {given_uri}{was}"
    else:
        raise ConfigError(
            f"--tracking-uri {given_uri} is not the MLflow store this run writes to, {expected_uri}{was}: one run's "
            f"trials would be split over two stores; resume with --tracking-uri {expected_uri} (or without "
            "--tracking-uri), or start a new run without --resume"
        )
    return Locations(tracking_uri, _resumed_storage(options, output, recorded, moved), note)


def _resumed_storage(options: RunOptions, output: Path, recorded: dict, moved: bool) -> str | None:
    given = _storage(options)
    if recorded.get("storage_in_output"):
        expected = str(output / recorded["storage_in_output"])
    else:
        expected = recorded.get("storage")
    if given == expected or (moved and given and not recorded.get("storage_in_output")):
        return given
    if given is None and expected and not moved:
        return expected
    if given is None and expected is None:
        return None
    raise ConfigError(
        f"--storage {given or '(default: OUTPUT/ray)'} is not where this run keeps Ray Tune's state, "
        f"{expected or output / 'ray'}: the resume would not find its trials; resume with --storage {expected} "
        "(or without it), or start a new run without --resume"
        if expected
        else f"this run keeps Ray Tune's state in {output / 'ray'}, not in --storage {given}: resume without "
        "--storage, or start a new run without --resume"
    )


def check_flags_apply(options: RunOptions, suite: SuiteSpec) -> None:
    """A flag the suite's protocol would ignore is an error, not a silent no-op."""
    if suite.systems and options.search_space:
        raise ConfigError(
            f"--search-space does not apply to suite {suite.name!r}: a repeated-CV suite compares its systems "
            f"({', '.join(suite.systems)}), each with its own space; to compare encoders use `python -m benchmark "
            "compare`, or define a system (systems.yaml) and a suite in a --tasks-dir folder"
        )
    if not suite.systems and options.reuse_fits:
        raise ConfigError(f"--reuse-fits does not apply to suite {suite.name!r}: it is a holdout suite (no fold fits)")


def check_before_start(options: RunOptions, output: Path) -> None:
    """The checks that need no state: output folder, cluster address, trial sizes."""
    check_output(output)
    check_cluster_and_resources(options)
