"""Layer 0, what every other package may use: errors, shared names (MLflow tags, metric keys),
the name registry with "did you mean", atomic file writes and hashes, device resolution, the version.
"""

from benchmark.core.device import resolve_device
from benchmark.core.errors import BenchmarkError, ConfigError, DataError, DownloadError, EncoderError, UnknownNameError
from benchmark.core.io import CACHE_ENV, atomic_write_bytes, cache_dir, hash_items, sha256_bytes
from benchmark.core.registry import DuplicateNameError, Registry
from benchmark.core.version import __version__

__all__ = [
    "BenchmarkError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "EncoderError",
    "UnknownNameError",
    "DuplicateNameError",
    "Registry",
    "CACHE_ENV",
    "atomic_write_bytes",
    "cache_dir",
    "hash_items",
    "sha256_bytes",
    "resolve_device",
    "__version__",
]
