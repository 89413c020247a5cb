"""What every perf section shares: the machine line, interleaved repeats, the report being written."""

from __future__ import annotations

import os
import platform
import resource
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.data.loaders import load_dataset
from benchmark.model.config import TrialConfig
from benchmark.splits.splitters import make_split
from benchmark.training.trial import prepare_trial_data


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}); python {platform.python_version()}; {gpu}"
    )


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt(values: list[float]) -> str:
    return f"{_median(values):.2f} | {min(values):.2f} | {max(values):.2f}"


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Time each callable `repeats` times, alternating between them; each returns its seconds."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            out[name].append(run())
    return out


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        print("\n".join(lines), flush=True)

    def target(self, text: str, met: bool) -> None:
        self.verdicts.append(f"- {'met' if met else 'NOT met'}: {text}")


# ---------------------------------------------------------------------------------------- trial
def _chembl_setup(data: str | None):
    dataset = load_dataset(data)
    split = make_split(dataset, "scaffold", 0)
    prepared = prepare_trial_data(dataset, TrialConfig(), split)
    return dataset, split, prepared


def peak_rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM). Unlike ru_maxrss, which Linux carries
    over exec from the forking parent, it starts afresh in a spawned child."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
