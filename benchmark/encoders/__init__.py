"""Layer 3: frozen encoders (plugins), their registry, the embedding cache and graph featurisation."""

from benchmark.encoders.base import Encoder, encoder_key
from benchmark.encoders.checks import check_encoder
from benchmark.encoders.registry import ENTRY_POINT_GROUP, build_encoder, encoder_registry, encoders_of

__all__ = [
    "Encoder",
    "check_encoder",
    "encoder_key",
    "ENTRY_POINT_GROUP",
    "build_encoder",
    "encoder_registry",
    "encoders_of",
]
