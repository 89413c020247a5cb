"""The command line: one module per verb, each calling the library API."""

from benchmark.cli.main import main

__all__ = ["main"]
