"""`python -m benchmark perf`: measured speed of the training path, written to reports/perf.md.

Each figure is a median over repeats, measured in the same run as the straightforward (dense)
implementation it is compared with. Only what is measured here is reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

import torch

from benchmark.config import TrialConfig
from benchmark.data.loaders import load_dataset
from benchmark.splits import make_split
from benchmark.trial import prepare_trial_data
from benchmark.training import train_bridge


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}; {os.cpu_count()} logical CPUs; torch {torch.__version__} ({torch.get_num_threads()} threads); "
            f"python {platform.python_version()}; "
            f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")


def time_training(config: TrialConfig, data, split, repeats: int, device: str) -> list[float]:
    dev = torch.device(device)
    mol_x = torch.as_tensor(data.mol_features, device=dev)
    text_x = torch.as_tensor(data.text_features, device=dev)
    groups = None if data.groups is None else data.groups[split.train]
    seconds = []
    for _ in range(repeats):
        outcome = train_bridge(config, mol_x, text_x, data.mol_idx[split.train], data.text_idx[split.train], groups)
        seconds.append(outcome.seconds)
    return seconds


def run_perf(*, data: str | None = None, repeats: int = 3, epochs: int = 100, out: str = "reports/perf.md",
             device: str = "cpu") -> str:
    dataset = load_dataset(data)
    split = make_split(dataset, "scaffold", 0)
    base = TrialConfig(optim={"epochs": epochs})
    data_ = prepare_trial_data(dataset, base, split)
    rows = []
    results = {}
    for label, cfg in (("dense fingerprint head (straightforward)", base.model_copy(update={"implementation": "reference"})),
                       ("sparse fingerprint head (embedding bag over on-bits)", base)):
        times = time_training(cfg, data_, split, repeats, device)
        results[label] = statistics.median(times)
        rows.append(f"| {label} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")
    dense, sparse = results.values()
    command = "python -m benchmark perf " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "python -m benchmark perf"
    text = "\n".join([
        "# Performance", "",
        f"Machine: {_machine()}.", f"Command: `{command.strip()}`; device {device}; {repeats} repeats each, medians.",
        f"Workload: one bridge trial, ECFP4 (2048 bits) + MiniLM (384-d), d = 256, batch 512, {epochs} epochs, "
        f"{len(split.train)} training pairs of the ChEMBL snapshot (scaffold split). Training time only "
        "(`timing.train_seconds`), embeddings from the cache.", "",
        "| path | median s | min s | max s |", "|---|---|---|---|", *rows, "",
        f"Speed-up of the sparse path over the dense path in this run: {dense / sparse:.2f}x.", "",
    ])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    return text
