"""Seeded schedules: Poisson arrivals for the throughput sweep, mode order per question."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


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


def mode_order(modes: Sequence[T], question_id: str, *, seed: int = 0) -> list[T]:
    """The order in which one question's modes are run: a seeded shuffle per question.

    A fixed order lets a mode that runs later reuse the cloud's prefix cache warmed by an
    earlier one on the same question (``sot-cloud`` and ``pice-progressive`` send the same
    sketch prompt); shuffling gives every mode the later slot equally often. Seeded by the run's
    seed and the question's id, so a rerun, or a subset of the questions, keeps each order.
    """
    order = list(modes)
    random.Random(f"order:{seed}:{question_id}").shuffle(order)
    return order
