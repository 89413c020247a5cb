"""Loss terms for training a bridge on one batch of (molecule, text) pairs.

All terms take L2-normalised embeddings `mol` and `text` (B x d), with ids that say which
rows are the same molecule / the same text / the same target, so that in-batch duplicates
(a molecule with two targets, a mechanism shared by two drugs) are never used as negatives.

- symmetric InfoNCE (temperature T), with
  - an additive margin m on the positive logit: (s_ii - m) / T,
  - hard-negative weighting: each negative j of anchor i is weighted by
    w_ij = exp(beta * s_ij) / mean_j' exp(beta * s_ij') (weights detached), times
    `same_target_weight` when j acts on the anchor's target; beta = 0 and weight 1 give
    plain InfoNCE;
- second-order similarity (Song et al., eq. 6-8): in-batch distributions
  P^tt, P^mm (uni-modal) and P^tm, P^mt (cross-modal), softmax over similarities / T_s;
  L_u2u = KL(P^tt || P^mm) + KL(P^mm || P^tt);
  L_u2c = KL(P^tt || P^mt) + KL(P^mm || P^tm), with the uni-modal sides detached
  (the paper does not let cross-modal distributions supervise uni-modal ones).

`fused_info_nce` is the same symmetric InfoNCE (margin, hard-negative weights) as one autograd
function whose backward is the closed form (softmax_rows + softmax_cols - 2I) / 2BT: a few
passes over the B x B matrix instead of autograd's dozen (tested equal, gradcheck).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.model.config import LossConfig


@dataclass
class BatchIds:
    mol: torch.Tensor  # (B,) molecule index
    text: torch.Tensor  # (B,) text index
    group: torch.Tensor  # (B,) target code, -1 when unknown
    #: (rows, cols) of the false negatives when already known (`InBatchDuplicates`); else computed
    duplicates: tuple[torch.Tensor, torch.Tensor] | None = None

    def false_negatives(self) -> torch.Tensor:
        """Off-diagonal pairs that are in fact positives (same molecule or same text)."""
        same = (self.mol[:, None] == self.mol[None, :]) | (self.text[:, None] == self.text[None, :])
        return same & ~torch.eye(len(self.mol), dtype=torch.bool, device=self.mol.device)

    def same_target(self) -> torch.Tensor:
        return (self.group[:, None] == self.group[None, :]) & (self.group[:, None] >= 0)


def _same_key_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (p, q), p != q, with keys[p] == keys[q] (vectorised over groups)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    group_of = np.repeat(np.arange(len(starts)), sizes)
    members = np.flatnonzero(sizes[group_of] > 1)
    reps = sizes[group_of[members]]
    p = np.repeat(members, reps)
    q = np.repeat(starts[group_of[members]], reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
    keep = p != q
    return order[p[keep]], order[q[keep]]


class InBatchDuplicates:
    """Training pairs that share a molecule or a text, found once; each epoch keeps those that
    land in the same batch, as (row, col) lists - no B x B comparison per step."""

    def __init__(self, mol_idx: np.ndarray, text_idx: np.ndarray, device: torch.device | str = "cpu"):
        mol_idx, text_idx = np.asarray(mol_idx, dtype=np.int64), np.asarray(text_idx, dtype=np.int64)
        pairs = [_same_key_pairs(mol_idx), _same_key_pairs(text_idx)]
        n = len(mol_idx)
        codes = np.unique(np.concatenate([p * n + q for p, q in pairs]))
        self.p = torch.as_tensor(codes // n, device=device)
        self.q = torch.as_tensor(codes % n, device=device)

    def epoch(self, order: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = len(order)
        n_batches = (n + batch_size - 1) // batch_size
        slot = torch.empty_like(order)
        slot[order] = torch.arange(n, device=order.device)
        sp, sq = slot.index_select(0, self.p), slot.index_select(0, self.q)
        batch = torch.div(sp, batch_size, rounding_mode="floor")
        same = batch == torch.div(sq, batch_size, rounding_mode="floor")
        batch, sp, sq = batch[same], sp[same], sq[same]
        by_batch = torch.sort(batch, stable=True).indices
        rows, cols = sp[by_batch] % batch_size, sq[by_batch] % batch_size
        bounds = [0, *torch.cumsum(torch.bincount(batch, minlength=n_batches), 0).tolist()]
        return [(rows[bounds[b] : bounds[b + 1]], cols[bounds[b] : bounds[b + 1]]) for b in range(n_batches)]


def hard_negatives(cfg: LossConfig) -> bool:
    return bool(cfg.hard_negative_beta) or cfg.same_target_weight != 1.0


@torch.no_grad()
def negative_log_weights(sim: torch.Tensor, ids: BatchIds, cfg: LossConfig, excluded: torch.Tensor) -> torch.Tensor:
    """Log-weights added to each row's negative logits (0 on the diagonal and excluded pairs)."""
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    negatives = ~eye & ~excluded
    log_w = cfg.hard_negative_beta * sim
    log_w = log_w.masked_fill(~negatives, float("-inf"))
    # normalise so the mean weight over a row's negatives is 1 (plain InfoNCE when beta = 0)
    count = negatives.sum(1, keepdim=True).clamp(min=1)
    log_w = log_w - (torch.logsumexp(log_w, dim=1, keepdim=True) - torch.log(count.to(sim.dtype)))
    if cfg.same_target_weight != 1.0:
        log_w = log_w + ids.same_target().to(sim.dtype) * torch.log(torch.tensor(cfg.same_target_weight))
    return torch.where(negatives, log_w, torch.zeros_like(log_w))


def _directional_nce(sim: torch.Tensor, ids: BatchIds, cfg: LossConfig, excluded: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row's positive (the diagonal) against that row's weighted negatives."""
    n = sim.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    logits = sim / cfg.temperature
    if cfg.margin:
        logits = logits - eye * (cfg.margin / cfg.temperature)
    if hard_negatives(cfg):
        logits = logits + negative_log_weights(sim, ids, cfg, excluded)
    logits = logits.masked_fill(excluded, float("-inf"))
    target = torch.arange(n, device=sim.device)
    return F.cross_entropy(logits, target)


def info_nce(mol: torch.Tensor, text: torch.Tensor, ids: BatchIds, cfg: LossConfig) -> torch.Tensor:
    sim = text @ mol.T  # row i: text i against all molecules
    excluded = ids.false_negatives()
    return 0.5 * (_directional_nce(sim, ids, cfg, excluded) + _directional_nce(sim.T, ids, cfg, excluded.T))


#: exp(-80) is still a normal float32, so logits spread over at most 80 need no per-row shift
_MAX_SPREAD = 80.0


class _SymmetricInfoNCE(torch.autograd.Function):
    """Both directions of InfoNCE over one logits matrix; backward in closed form.

    Inputs are unit vectors, so logits lie in [-(1 + margin) / T, 1 / T]. Without hard-negative
    weights and when that spread is at most `_MAX_SPREAD`, exp(logits - 1/T) can neither overflow
    nor underflow to zero, and one exponential serves both softmaxes (row sums and column sums).
    Otherwise each direction takes its own logsumexp: with hard negatives, rows add the row
    anchors' log-weights and columns the column anchors' (detached, as in `info_nce`).
    """

    @staticmethod
    def forward(ctx, text, mol, excluded, inv_t: float, shift: float, weighting):  # type: ignore[override]
        logits = torch.mm(text, mol.t())
        row_w = col_w = None
        if weighting is not None:  # (ids, cfg): log-weights from the raw similarities
            ids, cfg = weighting
            mask = excluded
            if isinstance(excluded, tuple):
                mask = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
                mask[excluded] = True
            row_w = negative_log_weights(logits, ids, cfg, mask)
            col_w = negative_log_weights(logits.t(), ids, cfg, mask.t()).t()
        logits.mul_(inv_t)
        if shift:
            logits.diagonal().sub_(shift)
        if isinstance(excluded, tuple):
            logits.index_put_(excluded, logits.new_tensor(float("-inf")))
        elif excluded is not None:
            logits.masked_fill_(excluded, float("-inf"))
        diagonal = logits.diagonal().clone()
        one_exp = row_w is None and (2.0 * inv_t + shift) <= _MAX_SPREAD
        if one_exp:
            weights = logits.sub_(inv_t).exp_()  # masked entries -> 0
            lse_rows = weights.sum(1).log_().add_(inv_t)
            lse_cols = weights.sum(0).log_().add_(inv_t)
            saved = (weights, weights)
        else:
            rows = logits if row_w is None else logits + row_w
            cols = logits if col_w is None else logits.add_(col_w)
            lse_rows, lse_cols = torch.logsumexp(rows, 1), torch.logsumexp(cols, 0)
            saved = (rows, cols)
        loss = 0.5 * ((lse_rows - diagonal).mean() + (lse_cols - diagonal).mean())
        ctx.save_for_backward(text, mol, *saved, lse_rows, lse_cols)
        ctx.inv_t, ctx.one_exp = inv_t, one_exp
        return loss

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        text, mol, rows, cols, lse_rows, lse_cols = ctx.saved_tensors
        n = rows.shape[0]
        if ctx.one_exp:  # softmax_rows + softmax_cols = E * (1 / rowsum + 1 / colsum)
            inv_t = ctx.inv_t
            g = torch.exp(inv_t - lse_rows)[:, None] + torch.exp(inv_t - lse_cols)[None, :]
            g.mul_(rows)
        else:
            g = (rows - lse_rows[:, None]).exp_()
            g.add_((cols - lse_cols[None, :]).exp_())
        g.diagonal().sub_(2.0)
        g.mul_(grad * (0.5 * ctx.inv_t / n))
        return g @ mol, g.t() @ text, None, None, None, None


def fused_info_nce(mol: torch.Tensor, text: torch.Tensor, ids: BatchIds, cfg: LossConfig) -> torch.Tensor:
    """`info_nce` (margin, hard-negative weighting, in-batch duplicates) with a closed-form backward."""
    excluded = ids.duplicates if ids.duplicates is not None else ids.false_negatives()
    weighting = (ids, cfg) if hard_negatives(cfg) else None
    return _SymmetricInfoNCE.apply(text, mol, excluded, 1.0 / cfg.temperature, cfg.margin / cfg.temperature, weighting)


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """mean_i KL(p_i || q_i) for row distributions given as log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def second_order(mol: torch.Tensor, text: torch.Tensor, cfg: LossConfig) -> tuple[torch.Tensor, torch.Tensor]:
    tau = cfg.second_order_temperature or cfg.temperature
    log_tt = F.log_softmax(text @ text.T / tau, dim=1)
    log_mm = F.log_softmax(mol @ mol.T / tau, dim=1)
    log_tm = F.log_softmax(text @ mol.T / tau, dim=1)  # text i -> molecules
    log_mt = F.log_softmax(mol @ text.T / tau, dim=1)  # molecule i -> texts
    u2u = _kl_rows(log_tt, log_mm) + _kl_rows(log_mm, log_tt)
    u2c = _kl_rows(log_tt.detach(), log_mt) + _kl_rows(log_mm.detach(), log_tm)
    return u2u, u2c


def total_loss(
    mol: torch.Tensor, text: torch.Tensor, ids: BatchIds, cfg: LossConfig, fused: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted sum of the switched-on terms, and each term's value (detached, for logging).

    `fused` uses `fused_info_nce` (same values and gradients as `info_nce`, tested).
    """
    parts: dict[str, torch.Tensor] = {}
    if cfg.infonce_weight:
        nce = fused_info_nce if fused else info_nce
        parts["infonce"] = cfg.infonce_weight * nce(mol, text, ids, cfg)
    if cfg.u2u_weight or cfg.u2c_weight:
        u2u, u2c = second_order(mol, text, cfg)
        if cfg.u2u_weight:
            parts["u2u"] = cfg.u2u_weight * u2u
        if cfg.u2c_weight:
            parts["u2c"] = cfg.u2c_weight * u2c
    loss = sum(parts.values())
    return loss, {k: v.detach() for k, v in parts.items()}
