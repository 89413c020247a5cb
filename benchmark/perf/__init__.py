"""Layer 10: `python -m benchmark perf`. Speed and memory measured against the straightforward implementations."""

from benchmark.perf.main import SECTIONS, run_perf

__all__ = ["SECTIONS", "run_perf"]
