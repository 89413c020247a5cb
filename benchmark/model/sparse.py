"""Sparse molecule features: fingerprints are ~98% zeros, so a linear head is a sum of the weight
rows of the on-bits (an embedding bag) instead of a dense (batch x 2048) @ (2048 x d) product.

Forward and weight gradient are both embedding bags: the forward sums weight rows per molecule
(row-major bags), the gradient sums output-gradient rows per fingerprint bit (column-major bags).
The column-major layout of every batch of an epoch comes from one stable sort per epoch
(`EpochBags`), so no step sorts or scatters.

The parameters are those of the dense `nn.Linear` (same initialisation, same optimiser state);
only the order of floating-point additions differs, so results agree to rounding (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def sparse_worthwhile(features: np.ndarray, max_density: float = 0.1) -> bool:
    return features.ndim == 2 and features.size > 0 and np.count_nonzero(features) / features.size <= max_density


def _flat_ranges(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenation of arange(s, s + l) for each (s, l), without a Python loop."""
    total = int(lengths.sum())
    offsets = torch.cumsum(lengths, 0) - lengths
    shift = torch.repeat_interleave(starts - offsets, lengths, output_size=total)
    return shift + torch.arange(total, device=starts.device)


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
        return cls(
            torch.as_tensor(indptr, dtype=torch.long, device=device),
            torch.as_tensor(cols, dtype=torch.long, device=device),
            torch.as_tensor(values, device=device),
            features.shape[1],
            bool(np.all(values == 1.0)),
        )

    def batch(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Flattened on-bit indices, bag offsets and (for counts) weights of the rows `ids`."""
        starts = self.indptr.index_select(0, ids)
        lengths = self.indptr.index_select(0, ids + 1) - starts
        flat = _flat_ranges(starts, lengths)
        offsets = torch.cumsum(lengths, 0) - lengths
        return (self.indices.index_select(0, flat), offsets, None if self.binary else self.values.index_select(0, flat))


@dataclass
class BagBatch:
    """One batch's on-bits in both layouts: row-major (forward) and column-major (weight gradient)."""

    indices: torch.Tensor  # on-bit columns, rows concatenated
    offsets: torch.Tensor  # (B,) start of each row's bag
    weights: torch.Tensor | None
    positions: torch.Tensor  # batch row of each on-bit, columns concatenated
    column_offsets: torch.Tensor  # (n_cols,) start of each column's bag
    column_weights: torch.Tensor | None


class EpochBags:
    """Both bag layouts for every batch of an epoch, built with one stable sort per epoch.

    The pairs' on-bits are kept in column order once; an epoch's shuffle assigns each pair a
    batch and a position, and a stable sort by batch keeps columns ascending within a batch.
    """

    def __init__(self, rows: SparseRows, pair_rows: torch.Tensor):
        self.rows, self.pair_rows = rows, pair_rows
        lengths = rows.indptr[pair_rows + 1] - rows.indptr[pair_rows]
        flat = _flat_ranges(rows.indptr[pair_rows], lengths)
        pair_of = torch.repeat_interleave(torch.arange(len(pair_rows), device=pair_rows.device), lengths)
        cols = rows.indices[flat]
        order = torch.sort(cols, stable=True).indices
        self.col, self.pair = cols[order], pair_of[order]
        self.value = None if rows.binary else rows.values[flat][order]

    def epoch(self, order: torch.Tensor, batch_size: int) -> list[BagBatch]:
        n, n_cols, device = len(order), self.rows.n_cols, order.device
        slot = torch.empty_like(order)
        slot[order] = torch.arange(n, device=device)
        n_batches = (n + batch_size - 1) // batch_size
        pair_slot = slot.index_select(0, self.pair)
        key = torch.div(pair_slot, batch_size, rounding_mode="floor")
        by_batch = _stable_argsort(key, n_batches)
        positions = pair_slot.index_select(0, by_batch).remainder_(batch_size)
        cols = self.col.index_select(0, by_batch)
        values = None if self.value is None else self.value.index_select(0, by_batch)
        bounds = [0, *torch.cumsum(torch.bincount(key, minlength=n_batches), 0).tolist()]
        all_cols = torch.arange(n_cols, device=device)
        indices, offsets, weights = self.rows.batch(self.pair_rows.index_select(0, order))
        row_bounds = offsets[::batch_size].tolist() + [len(indices)]
        batches = []
        for b in range(n_batches):
            lo, hi, rlo, rhi = bounds[b], bounds[b + 1], row_bounds[b], row_bounds[b + 1]
            batches.append(
                BagBatch(
                    indices[rlo:rhi],
                    offsets[b * batch_size : (b + 1) * batch_size] - rlo,
                    None if weights is None else weights[rlo:rhi],
                    positions[lo:hi],
                    torch.searchsorted(cols[lo:hi], all_cols),  # columns ascend within a batch
                    None if values is None else values[lo:hi],
                )
            )
        return batches


def _stable_argsort(key: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Stable argsort of small non-negative integer keys (numpy's radix sort on the CPU)."""
    if key.device.type == "cpu" and n_keys < 2**15:
        return torch.from_numpy(np.argsort(key.numpy().astype(np.int16), kind="stable"))
    return torch.sort(key, stable=True).indices


class _BagProduct(torch.autograd.Function):
    """rows @ W for sparse rows, with the weight gradient as a column-major embedding bag."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, bags: BagBatch) -> torch.Tensor:  # type: ignore[override]
        ctx.bags = bags
        return F.embedding_bag(bags.indices, weight, bags.offsets, mode="sum", per_sample_weights=bags.weights)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        bags: BagBatch = ctx.bags
        grad_weight = F.embedding_bag(
            bags.positions,
            grad_out.contiguous(),
            bags.column_offsets,
            mode="sum",
            per_sample_weights=bags.column_weights,
        )
        return grad_weight, None


def bag_product(weight: torch.Tensor, bags: BagBatch) -> torch.Tensor:
    return _BagProduct.apply(weight, bags)


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

    def forward_bags(self, bags: BagBatch) -> torch.Tensor:
        return bag_product(self.weight_t, bags) + self.bias
