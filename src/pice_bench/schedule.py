"""Open-loop Poisson arrival schedules for the throughput sweep."""

from __future__ import annotations

import random


def poisson_arrivals(
    rate: float, *, max_count: int, max_duration: float, seed: int = 0
) -> list[float]:
    """Arrival offsets in seconds from the start of a Poisson process of ``rate`` per second.

    The schedule is bounded both ways: at most ``max_count`` arrivals and none later than
    ``max_duration`` seconds, so a sweep's cost is known in advance at any rate. The first
    arrival is at 0 (a run should not open with idle time) and the gaps are exponential.
    Seeded, so every mode sees the same arrival pattern at the same rate.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if max_count < 1 or max_duration < 0:
        raise ValueError("max_count must be >= 1 and max_duration >= 0")
    rng = random.Random(f"{seed}:{rate}")
    offsets = [0.0]
    while len(offsets) < max_count:
        nxt = offsets[-1] + rng.expovariate(rate)
        if nxt > max_duration:
            break
        offsets.append(nxt)
    return offsets
