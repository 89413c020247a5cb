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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.config import LossConfig


@dataclass
class BatchIds:
    mol: torch.Tensor  # (B,) molecule index
    text: torch.Tensor  # (B,) text index
    group: torch.Tensor  # (B,) target code, -1 when unknown

    def false_negatives(self) -> torch.Tensor:
        """Off-diagonal pairs that are in fact positives (same molecule or same text)."""
        same = (self.mol[:, None] == self.mol[None, :]) | (self.text[:, None] == self.text[None, :])
        return same & ~torch.eye(len(self.mol), dtype=torch.bool, device=self.mol.device)

    def same_target(self) -> torch.Tensor:
        return (self.group[:, None] == self.group[None, :]) & (self.group[:, None] >= 0)


def _directional_nce(sim: torch.Tensor, ids: BatchIds, cfg: LossConfig, excluded: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row's positive (the diagonal) against that row's weighted negatives."""
    n = sim.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=sim.device)
    logits = sim / cfg.temperature
    if cfg.margin:
        logits = logits - eye * (cfg.margin / cfg.temperature)
    negatives = ~eye & ~excluded
    if cfg.hard_negative_beta or cfg.same_target_weight != 1.0:
        with torch.no_grad():
            log_w = cfg.hard_negative_beta * sim
            log_w = log_w.masked_fill(~negatives, float("-inf"))
            # normalise so the mean weight over a row's negatives is 1 (plain InfoNCE when beta = 0)
            count = negatives.sum(1, keepdim=True).clamp(min=1)
            log_w = log_w - (torch.logsumexp(log_w, dim=1, keepdim=True) - torch.log(count.to(sim.dtype)))
            if cfg.same_target_weight != 1.0:
                log_w = log_w + ids.same_target().to(sim.dtype) * torch.log(torch.tensor(cfg.same_target_weight))
            log_w = torch.where(negatives, log_w, torch.zeros_like(log_w))
        logits = logits + log_w
    logits = logits.masked_fill(excluded, float("-inf"))
    target = torch.arange(n, device=sim.device)
    return F.cross_entropy(logits, target)


def info_nce(mol: torch.Tensor, text: torch.Tensor, ids: BatchIds, cfg: LossConfig) -> torch.Tensor:
    sim = text @ mol.T  # row i: text i against all molecules
    excluded = ids.false_negatives()
    return 0.5 * (_directional_nce(sim, ids, cfg, excluded) + _directional_nce(sim.T, ids, cfg, excluded.T))


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


def total_loss(mol: torch.Tensor, text: torch.Tensor, ids: BatchIds, cfg: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum of the switched-on terms, and each term's value (for logging)."""
    parts: dict[str, torch.Tensor] = {}
    if cfg.infonce_weight:
        parts["infonce"] = cfg.infonce_weight * info_nce(mol, text, ids, cfg)
    if cfg.u2u_weight or cfg.u2c_weight:
        u2u, u2c = second_order(mol, text, cfg)
        if cfg.u2u_weight:
            parts["u2u"] = cfg.u2u_weight * u2u
        if cfg.u2c_weight:
            parts["u2c"] = cfg.u2c_weight * u2c
    loss = sum(parts.values())
    return loss, {k: float(v.detach()) for k, v in parts.items()}
