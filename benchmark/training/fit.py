"""Train a bridge on resident full-batch tensors: AdamW, shuffled mini-batches, seeded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.encoders.graphs import GraphHead, graph_config
from benchmark.model.bridge import Bridge, head
from benchmark.model.config import TrialConfig
from benchmark.model.losses import BatchIds, InBatchDuplicates, total_loss
from benchmark.model.sparse import EpochBags, SparseRows, sparse_worthwhile
from benchmark.training.optim import EagerAdamW

EpochCallback = Callable[[int, Bridge, dict[str, float]], None]


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


def build_bridge(cfg: TrialConfig, mol_dim: int, text_dim: int, *, graphs=None, view_dim: int | None = None) -> Bridge:
    """Seeded initialisation: the same config always starts from the same weights. `graphs`
    (`benchmark.graphs.GraphTensors`) puts the trainable graph encoder under the molecule head; `view_dim`
    adds the head of a frozen molecular view to align it to (ACML)."""
    torch.manual_seed(cfg.seed)
    mol_head = None
    if graphs is not None:
        params = graph_config(cfg.mol_encoder.params)
        mol_head = GraphHead(params, head(params.hidden, cfg.bridge), graphs)
    return Bridge(
        mol_dim,
        text_dim,
        cfg.bridge,
        fused_normalize=cfg.implementation == "fast",
        mol_head=mol_head,
        view_dim=view_dim,
    )


def view_alignment(
    bridge: Bridge, mol: torch.Tensor, mol_ids: torch.Tensor, view_x: torch.Tensor, temperature: float
) -> torch.Tensor:
    """ACML's extra term: symmetric InfoNCE between the trainable molecule embeddings and a frozen molecular
    view of the same molecules (each molecule once per batch)."""

    unique, inverse = torch.unique(mol_ids, return_inverse=True)
    first = torch.zeros(len(unique), dtype=torch.long, device=mol.device).scatter_(
        0, inverse, torch.arange(len(mol_ids), device=mol.device)
    )
    logits = mol[first] @ bridge.embed_views(view_x[unique]).T / temperature
    target = torch.arange(len(unique), device=mol.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@dataclass
class TrainingOutcome:
    bridge: Bridge
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def make_optimizer(bridge: Bridge, cfg: TrialConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (torch's, without importing torch.compile: `EagerAdamW`); the fast implementation uses PyTorch's fused
    kernel (one pass over each parameter)."""
    fused = cfg.implementation == "fast" and device.type in ("cpu", "cuda")
    return EagerAdamW(
        bridge.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, fused=True if fused else None
    )


def molecule_bags(cfg: TrialConfig, mol_x: torch.Tensor, mol_idx: torch.Tensor) -> EpochBags | None:
    """On-bit bags for the fast path: a linear head over sparse (fingerprint-like) features."""
    if cfg.implementation != "fast" or cfg.bridge.head != "linear":
        return None
    host = mol_x.detach().cpu().numpy()
    return EpochBags(SparseRows.from_dense(host, mol_x.device), mol_idx) if sparse_worthwhile(host) else None


def train_bridge(
    cfg: TrialConfig,
    mol_x: torch.Tensor,
    text_x: torch.Tensor,
    mol_idx: np.ndarray,
    text_idx: np.ndarray,
    groups: np.ndarray | None,
    *,
    on_epoch: EpochCallback | None = None,
    graphs=None,
    view_x: torch.Tensor | None = None,
) -> TrainingOutcome:
    """Train on the pairs (mol_idx[i], text_idx[i]); features are full matrices already on the device.

    Everything stays resident on the device; the only host synchronisation is one per epoch (the
    logged loss). `seconds` covers the optimisation loop only (not callbacks such as validation).
    """
    device = mol_x.device
    bridge = build_bridge(
        cfg, mol_x.shape[1], text_x.shape[1], graphs=graphs, view_dim=None if view_x is None else view_x.shape[1]
    ).to(device)
    align_weight = float(cfg.mol_encoder.params.get("align_weight", 0.0)) if view_x is not None else 0.0
    optimizer = make_optimizer(bridge, cfg, device)
    mi = torch.as_tensor(mol_idx, dtype=torch.long, device=device)
    ti = torch.as_tensor(text_idx, dtype=torch.long, device=device)
    gi = torch.as_tensor(group_codes(groups, len(mol_idx)), dtype=torch.long, device=device)
    fast = cfg.implementation == "fast"
    bags = molecule_bags(cfg, mol_x, mi) if graphs is None else None
    duplicates = InBatchDuplicates(mol_idx, text_idx, device) if fast else None
    generator = torch.Generator().manual_seed(cfg.seed)
    n, batch_size = len(mi), cfg.optim.batch_size
    outcome = TrainingOutcome(bridge)
    for epoch in range(cfg.optim.epochs):
        started = time.perf_counter()
        bridge.train()
        order = torch.randperm(n, generator=generator).to(device)
        epoch_bags = bags.epoch(order, batch_size) if bags is not None else None
        epoch_duplicates = duplicates.epoch(order, batch_size) if duplicates is not None else None
        # one gather per epoch; each step then takes contiguous slices
        mi_e, ti_e, gi_e = mi.index_select(0, order), ti.index_select(0, order), gi.index_select(0, order)
        text_e = text_x.index_select(0, ti_e)
        totals: dict[str, torch.Tensor] = {}
        steps = 0
        for b, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            if stop - start < 2:  # a lone pair has no negatives
                continue
            ids = BatchIds(
                mi_e[start:stop],
                ti_e[start:stop],
                gi_e[start:stop],
                epoch_duplicates[b] if epoch_duplicates is not None else None,
            )
            mol = (
                bridge.embed_molecule_bags(epoch_bags[b])
                if epoch_bags is not None
                else bridge.embed_molecules(mol_x[ids.mol])
            )
            text = bridge.embed_texts(text_e[start:stop])
            loss, parts = total_loss(mol, text, ids, cfg.loss, fused=fast)
            if align_weight:
                parts["align"] = align_weight * view_alignment(bridge, mol, ids.mol, view_x, cfg.loss.temperature)
                loss = loss + parts["align"]
                parts["align"] = parts["align"].detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            for key, value in (("loss", loss.detach()), *parts.items()):
                totals[key] = totals[key] + value if key in totals else value
        record = {"epoch": epoch + 1, **{k: float(v) / max(steps, 1) for k, v in totals.items()}}
        outcome.seconds += time.perf_counter() - started
        outcome.history.append(record)
        if on_epoch is not None:
            on_epoch(epoch + 1, bridge, record)
    bridge.eval()
    return outcome
