"""Layer 4: what is trained. The trial configuration (typed, validated), the bridge heads, the loss terms
and the sparse fingerprint kernels of the fast path.
"""

from benchmark.model.bridge import Bridge
from benchmark.model.config import (
    BridgeConfig,
    EncoderSpec,
    LossConfig,
    OptimConfig,
    TrialConfig,
    flatten,
    short_config,
)
from benchmark.model.losses import total_loss

__all__ = [
    "BridgeConfig",
    "EncoderSpec",
    "LossConfig",
    "OptimConfig",
    "TrialConfig",
    "flatten",
    "short_config",
    "Bridge",
    "total_loss",
]
