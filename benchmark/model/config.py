"""Typed, validated configuration of one bridge trial (pydantic).

A trial is a pure function of (TrialConfig, cached embeddings, split); everything that
changes its numbers lives here, so a configuration can be hashed, logged and searched.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, model_validator

from benchmark.core.settings import Strict
from benchmark.encoders.graphs import GRAPH_ENCODER, graph_config


def flatten(tree: dict[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """{'loss': {'margin': 0.1}} -> {'loss.margin': 0.1} (for logging and search-space names)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, sep, path))
        else:
            out[path] = value
    return out


class EncoderSpec(Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class BridgeConfig(Strict):
    """Dual heads into a shared space. `memory_bank`: per-modality token maps + shared learnable queries."""

    head: Literal["linear", "mlp", "memory_bank"] = "linear"
    dim: int = Field(256, gt=0)
    hidden_dim: int = Field(512, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    memory_slots: int = Field(16, gt=0)
    memory_tokens: int = Field(8, gt=0)
    memory_heads: int = Field(4, gt=0)

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        if self.head == "memory_bank" and self.dim % self.memory_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by memory_heads ({self.memory_heads})")
        return self


class LossConfig(Strict):
    """Weighted loss terms. A weight of 0 switches a term off."""

    temperature: float = Field(0.07, gt=0, le=10)
    infonce_weight: float = Field(1.0, ge=0)
    margin: float = Field(0.0, ge=0, le=2)
    hard_negative_beta: float = Field(0.0, ge=0)
    same_target_weight: float = Field(1.0, ge=1)
    u2u_weight: float = Field(0.0, ge=0)
    u2c_weight: float = Field(0.0, ge=0)
    second_order_temperature: float | None = Field(None, gt=0, le=10)

    @model_validator(mode="after")
    def _some_term(self):
        if self.infonce_weight == 0 and self.u2u_weight == 0 and self.u2c_weight == 0:
            raise ValueError("every loss term has weight 0: nothing would be trained")
        return self


class OptimConfig(Strict):
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(100, ge=0)
    batch_size: int = Field(512, ge=2)


class TrialConfig(Strict):
    """One bridge configuration; defaults are the paper's settings."""

    mol_encoder: EncoderSpec = EncoderSpec(name="ecfp4")
    text_encoder: EncoderSpec = EncoderSpec(name="minilm")
    text_field: str = "text_rich"
    bridge: BridgeConfig = BridgeConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    seed: int = 0
    #: "fast": sparse fingerprint head (embedding bags), closed-form InfoNCE backward, fused AdamW;
    #: "reference": the straightforward dense autograd path. Same numbers to float rounding (tested).
    implementation: Literal["fast", "reference"] = "fast"

    @model_validator(mode="after")
    def _graph_encoder_params(self):
        if self.mol_encoder.name == GRAPH_ENCODER:
            params = graph_config(self.mol_encoder.params)
            if params.align_weight and not params.align_to:
                raise ValueError(
                    "mol_encoder.params.align_weight > 0 needs align_to (a frozen molecule encoder, e.g. 'ecfp4')"
                )
        return self

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:12]

    def flat(self) -> dict[str, Any]:
        """Dotted keys, for logging as parameters."""
        return flatten(self.model_dump())


def short_config(cfg: TrialConfig) -> str:
    """One line naming what a configuration changes, e.g. 'ecfp4+minilm linear T=0.07 lr=0.001 ep=100'."""
    loss = cfg.loss
    parts = [f"{cfg.mol_encoder.name}+{cfg.text_encoder.name}", cfg.bridge.head, f"T={loss.temperature:.3g}"]
    if loss.margin:
        parts.append(f"m={loss.margin:.2g}")
    if loss.hard_negative_beta or loss.same_target_weight != 1:
        parts.append(f"hn={loss.hard_negative_beta:.2g}/{loss.same_target_weight:.2g}")
    if loss.u2u_weight or loss.u2c_weight:
        parts.append(f"so={loss.u2u_weight:.2g}/{loss.u2c_weight:.2g}")
    parts.append(f"lr={cfg.optim.lr:.2g} ep={cfg.optim.epochs}")
    return " ".join(parts)
