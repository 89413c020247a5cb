"""Train a bridge on resident full-batch tensors: AdamW, shuffled mini-batches, seeded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.bridge import Bridge
from benchmark.config import TrialConfig
from benchmark.losses import BatchIds, total_loss
from benchmark.sparse import SparseRows, sparse_worthwhile

EpochCallback = Callable[[int, Bridge, dict[str, float]], None]


def resolve_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def group_codes(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Integer codes for target labels; -1 where unknown."""
    if groups is None:
        return np.full(n, -1, dtype=np.int64)
    labels = np.asarray(groups, dtype=object)
    valid = np.array([g is not None and g != "" for g in labels], dtype=bool)
    codes = np.full(n, -1, dtype=np.int64)
    if valid.any():
        _, inverse = np.unique(labels[valid].astype(str), return_inverse=True)
        codes[valid] = inverse
    return codes


def build_bridge(cfg: TrialConfig, mol_dim: int, text_dim: int) -> Bridge:
    """Seeded initialisation: the same config always starts from the same weights."""
    torch.manual_seed(cfg.seed)
    return Bridge(mol_dim, text_dim, cfg.bridge)


@dataclass
class TrainingOutcome:
    bridge: Bridge
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train_bridge(cfg: TrialConfig, mol_x: torch.Tensor, text_x: torch.Tensor, mol_idx: np.ndarray,
                 text_idx: np.ndarray, groups: np.ndarray | None, *, on_epoch: EpochCallback | None = None) -> TrainingOutcome:
    """Train on the pairs (mol_idx[i], text_idx[i]); features are full matrices already on the device.

    `train_seconds` covers the optimisation loop only (not callbacks such as validation).
    """
    device = mol_x.device
    bridge = build_bridge(cfg, mol_x.shape[1], text_x.shape[1]).to(device)
    optimizer = torch.optim.AdamW(bridge.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    mi = torch.as_tensor(mol_idx, dtype=torch.long, device=device)
    ti = torch.as_tensor(text_idx, dtype=torch.long, device=device)
    gi = torch.as_tensor(group_codes(groups, len(mol_idx)), dtype=torch.long, device=device)
    sparse = None
    if cfg.sparse_molecules == "auto" and cfg.bridge.head == "linear":
        host = mol_x.detach().cpu().numpy()
        if sparse_worthwhile(host):
            sparse = SparseRows.from_dense(host, device)
    generator = torch.Generator().manual_seed(cfg.seed)
    n, batch_size = len(mi), cfg.optim.batch_size
    outcome = TrainingOutcome(bridge)
    for epoch in range(cfg.optim.epochs):
        started = time.perf_counter()
        bridge.train()
        order = torch.randperm(n, generator=generator).to(device)
        totals: dict[str, float] = {}
        steps = 0
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            if len(batch) < 2:  # a lone pair has no negatives
                continue
            ids = BatchIds(mi[batch], ti[batch], gi[batch])
            mol = bridge.embed_molecule_rows(mol_x, ids.mol, sparse)
            text = bridge.embed_texts(text_x[ids.text])
            loss, parts = total_loss(mol, text, ids, cfg.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
        outcome.seconds += time.perf_counter() - started
        record = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in totals.items()}}
        outcome.history.append(record)
        if on_epoch is not None:
            on_epoch(epoch + 1, bridge, record)
    bridge.eval()
    return outcome
