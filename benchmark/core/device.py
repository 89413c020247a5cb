"""Which torch device a computation runs on, and with how many CPU threads (one resolution for training,
encoders and trials)."""

from __future__ import annotations

import os

import torch


def resolve_device(device: str | None = None) -> torch.device:
    """`None` or 'auto': CUDA where available, else the CPU; anything else as torch names it."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; a container's or `taskset`'s limit included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pin_threads(threads: int | None = None) -> int:
    """Fix torch's CPU threads (default: the cores this process may use), whatever `OMP_NUM_THREADS` the shell set:
    the thread count changes the order of parallel sums, hence the numbers (the graph encoder's scatter sums most)."""
    n = max(1, int(threads or available_cores()))
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)  # for processes started from here
    return n
