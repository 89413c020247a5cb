"""How numbers are written for people: an estimate with its interval, in one format everywhere."""

from __future__ import annotations


def format_interval(value: float, low: float, high: float, digits: int = 3) -> str:
    """'0.118 [0.112, 0.124]': the estimate and its 95% interval, as the report, summary and README write them."""
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
