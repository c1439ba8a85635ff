"""Summaries of measured figures: percentiles, spreads, the median of repeated runs, rates."""

from __future__ import annotations

import math
from collections.abc import Callable

# The figures of every repeated run kept next to the median one.
REPEAT_FIELDS = (
    "upload_s",
    "upload_status",
    "upload_to_synced_s",
    "synced_seen_s",
    "silver_s",
    "seconds",
    "peak_rss_bytes",
    "status",
    "error",
)


def percentile(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile, interpolated linearly between the two nearest values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def dist(values: list[float | None]) -> dict:
    """Count, mean, p50/p95/p99, max and min of the values that are not None."""
    present = [v for v in values if v is not None]
    if not present:
        return {"n": 0}
    return {
        "n": len(present),
        "mean": sum(present) / len(present),
        "p50": percentile(present, 50),
        "p95": percentile(present, 95),
        "p99": percentile(present, 99),
        "max": max(present),
        "min": min(present),
    }


def median_run(runs: list[dict | None], key: Callable[[dict], float | None]) -> dict | None:
    """The run with the median ``key`` (the lower middle one of an even count), with every
    run's figures under "repeats"; failed runs count as the slowest."""
    done = [r for r in runs if r is not None]
    if not done:
        return None

    def value(run: dict) -> float:
        v = key(run)
        return math.inf if v is None or "error" in run else v

    ordered = sorted(done, key=value)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    # "round" pairs a run with the other tools' runs of the same round (a failed phase leaves a gap).
    chosen["repeats"] = [
        {k: r.get(k) for k in REPEAT_FIELDS if k in r} | {"value": value(r), "round": i + 1}
        for i, r in enumerate(runs)
        if r is not None
    ]
    return chosen


def lower_median(values: list[float | None]) -> float | None:
    """The median as ``median_run`` picks it (the lower middle of an even count), missing values
    ranking as the slowest; None when that middle one is missing."""
    if not values:
        return None
    ordered = sorted(math.inf if v is None else v for v in values)
    middle = ordered[(len(ordered) - 1) // 2]
    return None if math.isinf(middle) else middle


def sustained_rate(finished: list[float]) -> float | None:
    """Completions per second between the 10th and 90th percentile of the sorted completion
    times ``finished``: without the ramp-up while a queue fills and the tail while it drains.
    None when too few or too close together to tell."""
    lo, hi = int(len(finished) * 0.1), int(len(finished) * 0.9) - 1
    if hi > lo and finished[hi] > finished[lo]:
        return (hi - lo) / (finished[hi] - finished[lo])
    return None
