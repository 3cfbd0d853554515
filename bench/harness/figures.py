"""Percentiles and summaries, the same way in every bench."""

from __future__ import annotations

from collections.abc import Sequence


def pct(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), digits),
        "p50": round(pct(ordered, 50), digits),
        "p95": round(pct(ordered, 95), digits),
        "p99": round(pct(ordered, 99), digits),
        "max": round(ordered[-1], digits),
    }
