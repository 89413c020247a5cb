"""Thin bridges: trainable heads over frozen embeddings into a shared, L2-normalised space.

- `linear`: one linear map per modality (the paper's dual linear heads).
- `mlp`: Linear -> GELU -> Dropout -> Linear per modality.
- `memory_bank`: the second source's memory-bank projector adapted to pooled inputs. Frozen
  encoders here give one vector per item, not token sequences, so each modality first maps
  its vector to `memory_tokens` pseudo-tokens of width d (one linear map, reshaped); a
  projector *shared by both modalities* then lets `memory_slots` learnable queries
  cross-attend over those tokens, mean-pools the query outputs and applies a linear layer
  (eq. 1-2 of Song et al. with H = pseudo-tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.model.config import BridgeConfig
from benchmark.model.sparse import BagBatch, FeatureLinear


def head(in_dim: int, cfg: BridgeConfig) -> nn.Module:
    """The configured head from `in_dim` into the shared space (also on top of a trainable encoder)."""
    return _head(in_dim, cfg)


def _head(in_dim: int, cfg: BridgeConfig) -> nn.Module:
    if cfg.head == "mlp":
        return nn.Sequential(
            nn.Linear(in_dim, cfg.hidden_dim), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden_dim, cfg.dim)
        )
    if cfg.head == "memory_bank":
        return PseudoTokens(in_dim, cfg.memory_tokens, cfg.dim)
    return nn.Linear(in_dim, cfg.dim)


class PseudoTokens(nn.Module):
    """A pooled vector -> a short sequence of d-wide tokens."""

    def __init__(self, in_dim: int, n_tokens: int, dim: int):
        super().__init__()
        self.n_tokens, self.dim = n_tokens, dim
        self.proj = nn.Linear(in_dim, n_tokens * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).view(x.shape[0], self.n_tokens, self.dim)


class MemoryBankProjector(nn.Module):
    """Learnable queries cross-attending over tokens; shared by both modalities."""

    def __init__(self, dim: int, n_slots: int, n_heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_slots, dim) * dim**-0.5)
        self.attention = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(tokens)
        queries = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        attended, _ = self.attention(queries, tokens, tokens, need_weights=False)
        return self.out(attended.mean(dim=1))


class _UnitRows(torch.autograd.Function):
    """F.normalize(x, dim=1) with a closed-form backward: (g - y (y . g)) / |x|, three passes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(1e-12)
        y = x / norm
        ctx.save_for_backward(y, norm)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y, norm = ctx.saved_tensors
        dot = torch.linalg.vecdot(y, grad, dim=1).unsqueeze(1)
        return torch.addcmul(grad, y, dot, value=-1).div_(norm)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return _UnitRows.apply(x)


class Bridge(nn.Module):
    """Both heads (and the shared projector). `fused_normalize` swaps F.normalize for `unit_rows`
    (same values; a cheaper backward) - the fast training path sets it."""

    def __init__(
        self,
        mol_dim: int,
        text_dim: int,
        cfg: BridgeConfig,
        fused_normalize: bool = False,
        mol_head: nn.Module | None = None,
        view_dim: int | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.fused_normalize = fused_normalize
        if mol_head is not None:  # a trainable molecule encoder with its head (benchmark.graphs.GraphHead)
            self.mol_head = mol_head
        else:
            self.mol_head = FeatureLinear(mol_dim, cfg.dim) if cfg.head == "linear" else _head(mol_dim, cfg)
        self.text_head = _head(text_dim, cfg)
        #: ACML: a frozen molecular view projected into the shared space, to align the trainable encoder to
        self.view_head = nn.Linear(view_dim, cfg.dim) if view_dim else None
        self.projector = (
            MemoryBankProjector(cfg.dim, cfg.memory_slots, cfg.memory_heads)
            if cfg.head == "memory_bank"
            else nn.Identity()
        )

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        return unit_rows(x) if self.fused_normalize and x.dim() == 2 else F.normalize(x, dim=-1)

    def embed_molecules(self, x: torch.Tensor) -> torch.Tensor:
        return self._unit(self.projector(self.mol_head(x)))

    def embed_molecule_bags(self, bags: BagBatch) -> torch.Tensor:
        """A batch of sparse molecules given as on-bit bags (linear heads only)."""
        if not isinstance(self.mol_head, FeatureLinear):
            raise TypeError(f"on-bit bags need a linear molecule head, not {self.cfg.head!r}")
        return self._unit(self.projector(self.mol_head.forward_bags(bags)))

    def embed_views(self, v: torch.Tensor) -> torch.Tensor:
        return self._unit(self.view_head(v))

    def embed_texts(self, z: torch.Tensor) -> torch.Tensor:
        return self._unit(self.projector(self.text_head(z)))

    @torch.no_grad()
    def embed_all(self, x: torch.Tensor, modality: str, batch: int = 8192) -> torch.Tensor:
        """Project a whole matrix in eval mode (no dropout), in chunks."""
        was_training = self.training
        self.eval()
        fn = self.embed_molecules if modality == "molecule" else self.embed_texts
        out = (
            torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])
            if len(x)
            else x.new_zeros((0, self.cfg.dim))
        )
        self.train(was_training)
        return out
