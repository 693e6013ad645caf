"""Load-step summaries and the highest arrival rate a mode sustains under a latency SLO."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pice_bench.records import Mode, RequestRecord
from pice_bench.stats import percentile


@dataclass(frozen=True)
class LoadStep:
    """One mode at one offered rate."""

    mode: Mode
    rate: float
    sent: int
    completed: int
    errors: int
    p50_s: float
    p95_s: float
    # Completed requests per second, from the first arrival to the last completion.
    achieved_rps: float
    # Points the gateway duplicated on another edge (``progressive.hedging``), and those whose
    # duplicate finished first, from the answers' ``pice`` objects: a run's record shows
    # whether hedging acted, whatever the run's settings were said to be.
    hedges: int = 0
    hedges_won: int = 0

    def sustained(self, slo_s: float) -> bool:
        """Every request answered and the p95 latency within the SLO."""
        return self.sent > 0 and self.errors == 0 and self.p95_s <= slo_s

    @classmethod
    def of(cls, mode: Mode, rate: float, records: Sequence[RequestRecord]) -> LoadStep:
        ok = [r for r in records if r.ok]
        latencies = [r.answer.latency_s for r in ok]
        # A failed request's latency is not a latency of the service; it counts as an error.
        finishes = [(r.started_s or 0.0) + r.answer.latency_s for r in ok]
        span = max(finishes) if finishes else 0.0
        return cls(
            mode=mode,
            rate=rate,
            sent=len(records),
            completed=len(ok),
            errors=len(records) - len(ok),
            p50_s=percentile(latencies, 50),
            p95_s=percentile(latencies, 95),
            achieved_rps=len(ok) / span if span > 0 else 0.0,
            hedges=sum(_count(r, "hedges") for r in ok),
            hedges_won=sum(_count(r, "hedges_won") for r in ok),
        )


def _count(record: RequestRecord, key: str) -> int:
    """A per-request count of the gateway's ``pice`` object (0 where it has none)."""
    value = (record.answer.extension or {}).get(key)
    return value if isinstance(value, int) else 0


def max_sustained_rate(steps: Sequence[LoadStep], slo_s: float) -> float | None:
    """The highest offered rate sustained, walking up the sweep until the first failure.

    A sweep is monotone by intent: a rate that passes after a lower one failed is noise, not
    capacity, so it does not count. ``None`` when even the lowest rate fails.
    """
    best: float | None = None
    for step in sorted(steps, key=lambda s: s.rate):
        if not step.sustained(slo_s):
            break
        best = step.rate
    return best
