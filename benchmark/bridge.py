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

from benchmark.config import BridgeConfig
from benchmark.sparse import FeatureLinear, SparseRows


def _head(in_dim: int, cfg: BridgeConfig) -> nn.Module:
    if cfg.head == "mlp":
        return nn.Sequential(nn.Linear(in_dim, cfg.hidden_dim), nn.GELU(), nn.Dropout(cfg.dropout),
                             nn.Linear(cfg.hidden_dim, cfg.dim))
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


class Bridge(nn.Module):
    def __init__(self, mol_dim: int, text_dim: int, cfg: BridgeConfig):
        super().__init__()
        self.cfg = cfg
        self.mol_head = FeatureLinear(mol_dim, cfg.dim) if cfg.head == "linear" else _head(mol_dim, cfg)
        self.text_head = _head(text_dim, cfg)
        self.projector = (MemoryBankProjector(cfg.dim, cfg.memory_slots, cfg.memory_heads)
                          if cfg.head == "memory_bank" else nn.Identity())

    def embed_molecules(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.mol_head(x)), dim=-1)

    def embed_molecule_rows(self, features: torch.Tensor, ids: torch.Tensor, sparse: SparseRows | None = None) -> torch.Tensor:
        """Molecules `ids` of a feature matrix; from on-bits alone when `sparse` is given and the head is linear."""
        if sparse is not None and isinstance(self.mol_head, FeatureLinear):
            return F.normalize(self.projector(self.mol_head.forward_sparse(sparse, ids)), dim=-1)
        return self.embed_molecules(features[ids])

    def embed_texts(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.text_head(z)), dim=-1)

    @torch.no_grad()
    def embed_all(self, x: torch.Tensor, modality: str, batch: int = 8192) -> torch.Tensor:
        """Project a whole matrix in eval mode (no dropout), in chunks."""
        was_training = self.training
        self.eval()
        fn = self.embed_molecules if modality == "molecule" else self.embed_texts
        out = torch.cat([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)]) if len(x) else x.new_zeros((0, self.cfg.dim))
        self.train(was_training)
        return out
