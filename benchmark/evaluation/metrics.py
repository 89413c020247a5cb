"""Retrieval metrics with several correct answers, in both directions, global and grouped.

The gallery of an evaluated split is its set of unique items: unique molecules (structure
keys) and unique texts, so identical items never count against a query. A query's correct
answers are every gallery item paired with it. Its rank is the mid-rank of its best correct
answer: 1 + (negatives scoring higher) + (negatives scoring exactly the same) / 2, i.e. the
expected rank under random tie-breaking, so a model cannot gain from ties.

Grouped (within-target) retrieval ranks a query only among the items of one target, for
every target with at least `min_group_size` distinct molecules in the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from benchmark.evaluation.bootstrap import (
    Estimate,
    bootstrap_mean,
    bootstrap_median,
    interval,
    resample_statistics,
    too_few_groups,
)

RECALL_KS = (1, 5, 10)
CURVE_MAX_K = 50


def rank_of_best_positive(
    queries: torch.Tensor, gallery: torch.Tensor, positives: sp.csr_matrix, chunk: int = 4096
) -> np.ndarray:
    """Mid-rank of each query's best-scoring positive, scoring by dot product (cosine for unit vectors).

    The straightforward reference (one direction, query chunks against the whole gallery, dense
    positive masks): `rank_both_directions` must agree with it, and `perf` measures against it.
    """
    n_q = queries.shape[0]
    ranks = np.empty(n_q, dtype=np.float64)
    for start in range(0, n_q, chunk):
        stop = min(start + chunk, n_q)
        scores = queries[start:stop] @ gallery.T
        pos = torch.from_numpy(positives[start:stop].toarray()).to(scores.device)
        if not bool(pos.any(dim=1).all()):
            raise ValueError("every query needs at least one positive in the gallery")
        best = scores.masked_fill(~pos, float("-inf")).max(dim=1, keepdim=True).values
        negatives = ~pos
        higher = ((scores > best) & negatives).sum(dim=1)
        tied = ((scores == best) & negatives).sum(dim=1)
        ranks[start:stop] = (1 + higher.double() + 0.5 * tied.double()).cpu().numpy()
    return ranks


def _flat_view(buffer: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    return buffer.view(-1)[: rows * cols].view(rows, cols)


def rank_both_directions(
    texts: torch.Tensor,
    mols: torch.Tensor,
    text_pos: np.ndarray,
    mol_pos: np.ndarray,
    *,
    row_chunk: int = 1024,
    col_chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Mid-ranks of every text's best molecule and every molecule's best text, from one pass over
    S = texts @ mols.T in (row_chunk x col_chunk) blocks; the same numbers as two calls of
    `rank_of_best_positive` (tested), with half the matrix products and bounded memory.

    Molecules are reordered so that positives (text_pos[i], mol_pos[i]) lie near the diagonal.
    A first pass computes only the blocks holding positives, for each query's best positive
    score; the second pass counts, per block, scores above and equal to the row thresholds
    (texts) and the column thresholds (molecules), and removes the positives' own counts.
    Counting writes comparisons into a float buffer and sums it: far faster than summing bools.
    """
    n_t, n_m, device = texts.shape[0], mols.shape[0], texts.device
    pairs = np.unique(np.stack([np.asarray(text_pos, np.int64), np.asarray(mol_pos, np.int64)], 1), axis=0)
    if len(np.unique(pairs[:, 0])) != n_t or len(np.unique(pairs[:, 1])) != n_m:
        raise ValueError("every query needs at least one positive in the gallery")
    first_text = np.full(n_m, n_t, dtype=np.int64)
    np.minimum.at(first_text, pairs[:, 1], pairs[:, 0])
    col_order = np.argsort(first_text, kind="stable")
    col_of = np.empty(n_m, dtype=np.int64)
    col_of[col_order] = np.arange(n_m)
    t_idx, c_idx = pairs[:, 0], col_of[pairs[:, 1]]
    block = (t_idx // row_chunk) * (-(-n_m // col_chunk)) + c_idx // col_chunk
    by_block = np.argsort(block, kind="stable")
    t_idx, c_idx, block = t_idx[by_block], c_idx[by_block], block[by_block]
    starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
    bounds = dict(
        zip(
            block[starts].tolist(),
            zip(starts.tolist(), np.r_[starts[1:], len(block)].tolist(), strict=True),
            strict=True,
        )
    )
    mols_ordered = mols[torch.as_tensor(col_order, device=device)].contiguous()
    t_dev, c_dev = torch.as_tensor(t_idx, device=device), torch.as_tensor(c_idx, device=device)
    scores = torch.empty(min(row_chunk, n_t) * min(col_chunk, n_m), dtype=texts.dtype, device=device)
    compared = torch.empty_like(scores)
    n_col_blocks = -(-n_m // col_chunk)

    def block_scores(r: int, c: int) -> torch.Tensor:  # one call shape per block: both passes see the same values
        r0, c0 = r * row_chunk, c * col_chunk
        rows, cols = min(row_chunk, n_t - r0), min(col_chunk, n_m - c0)
        return torch.mm(texts[r0 : r0 + rows], mols_ordered[c0 : c0 + cols].T, out=_flat_view(scores, rows, cols))

    def positives_in(b: int, sim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lo, hi = bounds[b]
        r0, c0 = (b // n_col_blocks) * row_chunk, (b % n_col_blocks) * col_chunk
        t, c = t_dev[lo:hi], c_dev[lo:hi]
        return t, c, sim[t - r0, c - c0]

    best_t = torch.full((n_t,), float("-inf"), dtype=texts.dtype, device=device)
    best_c = torch.full((n_m,), float("-inf"), dtype=texts.dtype, device=device)
    for b in bounds:  # pass 1: best positive score of every query, from the blocks holding positives
        t, c, values = positives_in(b, block_scores(b // n_col_blocks, b % n_col_blocks))
        best_t.scatter_reduce_(0, t, values, "amax")
        best_c.scatter_reduce_(0, c, values, "amax")
    acc = torch.float64 if device.type == "cpu" else torch.float32  # counts stay exact integers either way
    higher_t, tied_t = torch.zeros(n_t, dtype=acc, device=device), torch.zeros(n_t, dtype=acc, device=device)
    higher_c, tied_c = torch.zeros(n_m, dtype=acc, device=device), torch.zeros(n_m, dtype=acc, device=device)
    for r in range(-(-n_t // row_chunk)):  # pass 2: count, per query, negatives above and tied with its best positive
        r0 = r * row_chunk
        for c in range(n_col_blocks):
            c0 = c * col_chunk
            sim = block_scores(r, c)
            rows, cols = sim.shape
            out = _flat_view(compared, rows, cols)
            row_best, col_best = best_t[r0 : r0 + rows, None], best_c[None, c0 : c0 + cols]
            higher_t[r0 : r0 + rows] += torch.gt(sim, row_best, out=out).sum(1)
            tied_t[r0 : r0 + rows] += torch.eq(sim, row_best, out=out).sum(1)
            higher_c[c0 : c0 + cols] += torch.gt(sim, col_best, out=out).sum(0)
            tied_c[c0 : c0 + cols] += torch.eq(sim, col_best, out=out).sum(0)
            b = r * n_col_blocks + c
            if b in bounds:  # positives are not negatives: take back what they added
                t, cc, values = positives_in(b, sim)
                higher_t.index_add_(0, t, (values > best_t[t]).to(acc), alpha=-1)
                tied_t.index_add_(0, t, (values == best_t[t]).to(acc), alpha=-1)
                higher_c.index_add_(0, cc, (values > best_c[cc]).to(acc), alpha=-1)
                tied_c.index_add_(0, cc, (values == best_c[cc]).to(acc), alpha=-1)
    text_ranks = (1 + higher_t + 0.5 * tied_t).cpu().numpy()
    mol_ranks = (1 + higher_c + 0.5 * tied_c).cpu().numpy()[col_of]
    return text_ranks.astype(np.float64), mol_ranks.astype(np.float64)


@dataclass
class RetrievalRun:
    """Per-query ranks of one direction and mode, plus what the queries were."""

    direction: str  # text_to_molecule | molecule_to_text
    grouped: bool
    ranks: np.ndarray
    query_items: np.ndarray  # index of the query item (text or molecule index in the dataset)
    query_groups: np.ndarray | None  # target of each query (grouped mode)
    gallery_size: np.ndarray  # gallery size seen by each query
    gallery_items: np.ndarray | None = None  # the global gallery (dataset indices), recorded with results

    @property
    def name(self) -> str:
        return self.direction + ("_grouped" if self.grouped else "")

    def summary(self, *, n_boot: int = 1000, seed: int = 0, ks=RECALL_KS) -> dict[str, dict]:
        return summarize(
            per_query_values(self.ranks, self.grouped, ks),
            self.query_groups if self.grouped else None,
            n_boot=n_boot,
            seed=seed,
        )

    def recall_curve(self, max_k: int = CURVE_MAX_K) -> list[float]:
        return [float(np.mean(self.ranks <= k)) for k in range(1, max_k + 1)] if len(self.ranks) else []

    def per_query(self) -> dict[str, np.ndarray]:
        out = {"query_item": self.query_items, "rank": self.ranks, "gallery_size": self.gallery_size}
        if self.query_groups is not None:
            out["group"] = self.query_groups
        return out


def per_query_values(ranks: np.ndarray, grouped: bool, ks=RECALL_KS) -> dict[str, np.ndarray]:
    """Each metric as a per-query vector (its mean is the metric); grouped modes keep recall@1 and MRR."""
    values = {f"recall@{k}": (ranks <= k).astype(np.float64) for k in ((1,) if grouped else ks)}
    values["mrr"] = 1.0 / ranks
    if not grouped:
        values["mean_rank"] = ranks.astype(np.float64)
        values["median_rank"] = ranks.astype(np.float64)
    return values


def summarize(values: dict[str, np.ndarray], groups: np.ndarray | None, *, n_boot: int, seed: int) -> dict[str, dict]:
    """Point estimates with 95% bootstrap CIs from one set of resamples shared by all metrics
    (whole groups resampled when `groups` is given)."""
    vectors = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    n = len(next(iter(vectors.values()))) if vectors else 0
    if n == 0:
        return {
            name: (
                bootstrap_median(v, n_boot=n_boot, seed=seed)
                if name == "median_rank"
                else bootstrap_mean(v, groups=groups, n_boot=n_boot, seed=seed)
            ).as_dict()
            for name, v in vectors.items()
        }
    group_arr = None if groups is None else np.asarray(groups)
    note = too_few_groups(group_arr)
    if note:  # no interval from a handful of groups: the points alone, saying why
        n_groups = int(len(np.unique(group_arr)))
        return {
            name: Estimate(float(v.mean()), np.nan, np.nan, n, n_groups, note).as_dict() for name, v in vectors.items()
        }
    # grouped modes carry no median rank (`per_query_values`), so one call serves every metric
    stats = resample_statistics(
        vectors,
        groups=group_arr,
        n_boot=n_boot,
        seed=seed,
        medians=("median_rank",) if "median_rank" in vectors else (),
    )
    n_groups = None if group_arr is None else int(len(np.unique(group_arr)))
    out: dict[str, dict] = {}
    for name, vector in vectors.items():
        point = float(np.median(vector)) if name == "median_rank" else float(vector.mean())
        low, high = interval(stats[name])
        out[name] = Estimate(point, low, high, n, None if name == "median_rank" else n_groups).as_dict()
    return out


def positive_matrix(q_local: np.ndarray, g_local: np.ndarray, n_q: int, n_g: int) -> sp.csr_matrix:
    data = np.ones(len(q_local), dtype=bool)
    matrix = sp.csr_matrix((data, (q_local, g_local)), shape=(n_q, n_g), dtype=bool)
    matrix.sum_duplicates()
    return matrix


def _directions(
    mol_emb: torch.Tensor,
    text_emb: torch.Tensor,
    mol_idx: np.ndarray,
    text_idx: np.ndarray,
    grouped: bool,
    groups: np.ndarray | None,
    group_label=None,
) -> list[RetrievalRun]:
    mols, m_local = np.unique(mol_idx, return_inverse=True)
    texts, t_local = np.unique(text_idx, return_inverse=True)
    gm, gt = mol_emb[torch.from_numpy(mols).to(mol_emb.device)], text_emb[torch.from_numpy(texts).to(text_emb.device)]
    t2m, m2t = rank_both_directions(gt, gm, t_local, m_local)
    label = (lambda n: np.full(n, group_label, dtype=object)) if grouped else (lambda n: None)
    return [
        RetrievalRun(
            "text_to_molecule",
            grouped,
            t2m,
            texts,
            label(len(texts)),
            np.full(len(texts), len(mols)),
            None if grouped else mols,
        ),
        RetrievalRun(
            "molecule_to_text",
            grouped,
            m2t,
            mols,
            label(len(mols)),
            np.full(len(mols), len(texts)),
            None if grouped else texts,
        ),
    ]


def _concat(runs: list[RetrievalRun], direction: str) -> RetrievalRun:
    chosen = [r for r in runs if r.direction == direction]
    return RetrievalRun(
        direction,
        True,
        np.concatenate([r.ranks for r in chosen]),
        np.concatenate([r.query_items for r in chosen]),
        np.concatenate([r.query_groups for r in chosen]),
        np.concatenate([r.gallery_size for r in chosen]),
    )


def molecule_to_text_against(
    mol_emb: torch.Tensor, text_emb: torch.Tensor, mol_idx: np.ndarray, text_idx: np.ndarray, gallery: np.ndarray
) -> RetrievalRun:
    """Global molecule-to-text ranks against a given text gallery (dataset indices), e.g. every text of
    the dataset: a new compound usually acts on a mechanism already known, not only on those of its side."""
    gallery = np.unique(gallery)
    missing = np.setdiff1d(text_idx, gallery)
    if len(missing):
        raise ValueError(f"{len(missing)} texts of the evaluated pairs are not in the text gallery")
    mols, m_local = np.unique(mol_idx, return_inverse=True)
    g_local = np.searchsorted(gallery, text_idx)
    positives = positive_matrix(m_local, g_local, len(mols), len(gallery))
    dev = mol_emb.device
    ranks = rank_of_best_positive(
        mol_emb[torch.from_numpy(mols).to(dev)], text_emb[torch.from_numpy(gallery).to(dev)], positives
    )
    return RetrievalRun("molecule_to_text", False, ranks, mols, None, np.full(len(mols), len(gallery)), gallery)


def evaluate_retrieval(
    mol_emb: torch.Tensor,
    text_emb: torch.Tensor,
    mol_idx: np.ndarray,
    text_idx: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    min_group_size: int = 3,
    text_gallery: np.ndarray | None = None,
) -> dict[str, RetrievalRun]:
    """Global retrieval over the evaluated pairs, and grouped retrieval when groups are known.

    `mol_emb` / `text_emb` hold embeddings of every molecule / text of the dataset (rows indexed
    by `mol_idx` / `text_idx`); the arrays describe the evaluated pairs only. With `text_gallery`
    (dataset text indices), global molecule-to-text ranks against that gallery instead of the
    evaluated pairs' own texts.
    """
    runs = {r.name: r for r in _directions(mol_emb, text_emb, mol_idx, text_idx, False, None)}
    if text_gallery is not None:
        runs["molecule_to_text"] = molecule_to_text_against(mol_emb, text_emb, mol_idx, text_idx, text_gallery)
    if groups is None:
        return runs
    grouped_runs: list[RetrievalRun] = []
    valid = np.array([g is not None and g != "" for g in groups], dtype=bool)
    labels = np.asarray(groups, dtype=object)
    for label in sorted(set(labels[valid].tolist())):
        rows = np.flatnonzero(valid & (labels == label))
        if len(np.unique(mol_idx[rows])) < min_group_size:
            continue
        grouped_runs += _directions(mol_emb, text_emb, mol_idx[rows], text_idx[rows], True, None, label)
    if grouped_runs:
        for direction in ("text_to_molecule", "molecule_to_text"):
            run = _concat(grouped_runs, direction)
            runs[run.name] = run
    return runs
