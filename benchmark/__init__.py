"""Drug-text alignment benchmark suite: thin contrastive bridges between frozen encoders."""

__version__ = "0.1.0"

from benchmark.api import train_and_evaluate  # noqa: E402
from benchmark.config import BridgeConfig, EncoderSpec, LossConfig, OptimConfig, TrialConfig  # noqa: E402

__all__ = ["__version__", "train_and_evaluate", "TrialConfig", "EncoderSpec", "BridgeConfig", "LossConfig", "OptimConfig"]
