"""Drug-text alignment benchmark suite: thin contrastive bridges between frozen encoders.

The packages, in the order data flows (each imports only those before it; `tests/test_architecture.py`
enforces it): core -> data -> splits -> evaluation -> encoders -> model -> training -> tracking -> cluster
-> tuning -> tasks -> run -> report -> perf -> cli. `api` is the library entry for one configuration.
"""

from benchmark.api import train_and_evaluate
from benchmark.core.version import __version__
from benchmark.model.config import BridgeConfig, EncoderSpec, LossConfig, OptimConfig, TrialConfig

__all__ = [
    "__version__",
    "train_and_evaluate",
    "TrialConfig",
    "EncoderSpec",
    "BridgeConfig",
    "LossConfig",
    "OptimConfig",
]
