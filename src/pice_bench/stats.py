"""Percentiles and summaries of latency samples."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

BOOTSTRAP_RESAMPLES = 2000


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between closest ranks.

    The same definition as ``numpy.percentile``'s default, so figures can be checked with it.
    An empty sample has no percentile: ``nan``.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    p50: float
    p95: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(n=0, mean=math.nan, p50=math.nan, p95=math.nan, min=math.nan, max=math.nan)
        return cls(
            n=len(values),
            mean=sum(values) / len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            min=min(values),
            max=max(values),
        )


def ratio_below(value: float, baseline: float) -> float:
    """How far ``value`` is below ``baseline``, as a fraction of it (0.4 = 40 % lower)."""
    if baseline <= 0 or math.isnan(baseline) or math.isnan(value):
        return math.nan
    return 1.0 - value / baseline


def bootstrap_interval(
    items: Sequence[T],
    statistic: Callable[[Sequence[T]], float],
    *,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile-bootstrap interval of ``statistic`` over ``items`` (the units resampled
    with replacement: here questions, so paired measurements stay together). Seeded, so a
    report is reproducible; resamples whose statistic is NaN are left out. ``(nan, nan)``
    for an empty sample."""
    if not items:
        return math.nan, math.nan
    rng = random.Random(f"bootstrap:{seed}")
    n = len(items)
    values = []
    for _ in range(resamples):
        value = statistic([items[rng.randrange(n)] for _ in range(n)])
        if not math.isnan(value):
            values.append(value)
    tail = (1.0 - level) / 2 * 100
    return percentile(values, tail), percentile(values, 100 - tail)
