"""Seeded schedules: Poisson arrivals for the throughput sweep, mode order per question."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
Q = TypeVar("Q")


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
    if max_count < 1 or max_duration < 0 or math.isnan(max_duration):
        raise ValueError("max_count must be >= 1 and max_duration >= 0")
    rng = random.Random(f"{seed}:{rate}")
    offsets = [0.0]
    while len(offsets) < max_count:
        nxt = offsets[-1] + rng.expovariate(rate)
        if nxt > max_duration:
            break
        offsets.append(nxt)
    return offsets


@dataclass(frozen=True)
class LoadSchedule(Generic[Q]):
    """One load step's arrivals: when each request goes out and which question it asks.

    Built once per rate and handed to every mode, so modes differ only in how they answer,
    never in what arrives when (the comparison of p95s is then paired, not two samples).
    """

    rate: float
    offsets: tuple[float, ...]
    questions: tuple[Q, ...]

    def __len__(self) -> int:
        return len(self.offsets)

    def fingerprint(self, key: Callable[[Q], str]) -> str:
        """A short digest of the arrivals, recorded with the results to show they matched."""
        text = ";".join(
            f"{o:.6f}:{key(q)}" for o, q in zip(self.offsets, self.questions, strict=True)
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_schedule(
    questions: Sequence[Q],
    rate: float,
    *,
    max_count: int,
    max_duration: float = math.inf,
    seed: int = 0,
) -> LoadSchedule[Q]:
    """Poisson arrivals at ``rate`` (:func:`poisson_arrivals`), questions round-robin."""
    if not questions:
        raise ValueError("a load schedule needs at least one question")
    offsets = poisson_arrivals(rate, max_count=max_count, max_duration=max_duration, seed=seed)
    return LoadSchedule(
        rate=rate,
        offsets=tuple(offsets),
        questions=tuple(questions[i % len(questions)] for i in range(len(offsets))),
    )


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
