"""Which torch device a computation runs on (one resolution for training, encoders and trials)."""

from __future__ import annotations

import torch


def resolve_device(device: str | None = None) -> torch.device:
    """`None` or 'auto': CUDA where available, else the CPU; anything else as torch names it."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
