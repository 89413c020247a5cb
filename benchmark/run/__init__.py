"""Layer 8: `python -m benchmark run`. A suite as stages: start (options, stores, Ray), plan, then per group
the holdout protocol or repeated cross-validation, with Ctrl-C, resume and results.json.
"""

from benchmark.run.interrupts import INTERRUPTED_EXIT, Interrupted
from benchmark.run.options import RUN_FLAGS, RunOptions, resume_command
from benchmark.run.suite import run_suite
from benchmark.run.summary import format_summary

__all__ = [
    "RUN_FLAGS",
    "RunOptions",
    "resume_command",
    "run_suite",
    "format_summary",
    "INTERRUPTED_EXIT",
    "Interrupted",
]
