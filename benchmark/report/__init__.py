"""Layer 9: `python -m benchmark report`. Leaderboards, comparisons and figures read back from MLflow only."""

from benchmark.report.base import ReportData
from benchmark.report.collect import collect
from benchmark.report.generate import generate_report

__all__ = ["generate_report", "collect", "ReportData"]
