"""Sparse molecule features: fingerprints are ~98% zeros, so a linear head is a sum of the weight
columns of the on-bits (an embedding bag) instead of a dense (batch x 2048) @ (2048 x d) product.

The parameters are those of the dense `nn.Linear` (same initialisation, same optimiser state);
only the order of floating-point additions differs, so results agree to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def sparse_worthwhile(features: np.ndarray, max_density: float = 0.1) -> bool:
    return features.ndim == 2 and features.size > 0 and np.count_nonzero(features) / features.size <= max_density


@dataclass
class SparseRows:
    """CSR rows on a device: indptr (n + 1), column indices and values."""

    indptr: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor
    n_cols: int
    binary: bool

    @classmethod
    def from_dense(cls, features: np.ndarray, device: torch.device | str = "cpu") -> SparseRows:
        rows, cols = np.nonzero(features)
        counts = np.bincount(rows, minlength=features.shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)])
        values = features[rows, cols].astype(np.float32)
        return cls(torch.as_tensor(indptr, dtype=torch.long, device=device),
                   torch.as_tensor(cols, dtype=torch.long, device=device),
                   torch.as_tensor(values, device=device), features.shape[1], bool(np.all(values == 1.0)))

    def batch(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Flattened on-bit indices, bag offsets and (for counts) weights of the rows `ids`."""
        starts, ends = self.indptr[ids], self.indptr[ids + 1]
        lengths = ends - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        total = int(lengths.sum())
        shift = torch.repeat_interleave(starts - offsets, lengths, output_size=total)
        flat = shift + torch.arange(total, device=ids.device)
        return self.indices[flat], offsets, None if self.binary else self.values[flat]


class FeatureLinear(torch.nn.Module):
    """A linear map stored as (in x out), so that on-bits gather contiguous rows.

    Initialised exactly like `nn.Linear(in_dim, out_dim)` (same random draws), so dense and
    sparse inputs, and older results, start from the same function.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        reference = torch.nn.Linear(in_dim, out_dim)
        self.weight_t = torch.nn.Parameter(reference.weight.detach().t().contiguous())
        self.bias = torch.nn.Parameter(reference.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight_t)

    def forward_sparse(self, rows: SparseRows, ids: torch.Tensor) -> torch.Tensor:
        indices, offsets, weights = rows.batch(ids)
        return F.embedding_bag(indices, self.weight_t, offsets, mode="sum", per_sample_weights=weights) + self.bias
