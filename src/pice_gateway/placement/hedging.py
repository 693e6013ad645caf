"""Hedging: when a point running on an edge is late enough to duplicate, and where.

A point placed on an edge gets an expected finish from :func:`~.estimate.expected_finish` at
placement. When it is still unfinished ``factor × estimate + floor`` seconds later, it is *due*:
dispatch starts one more attempt of it on another edge with a free sequence slot (never the
cloud, whose work is not spare capacity), and the first attempt to finish wins. The floor keeps
short estimates (a few tokens on a fast edge) from hedging on ordinary jitter; the factor scales
with the estimate, so a long point on a slow edge is not hedged merely for being long.

Pure and synchronous: dispatch keeps the clock and the running points, and asks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pice_gateway.placement.base import (
    EdgeStatus,
    PlacementPolicy,
    PointPlacement,
    busy_sequences,
    usable,
)
from pice_gateway.placement.eft import prior_curve
from pice_gateway.placement.estimate import Finish, finish_on


@dataclass(frozen=True)
class HedgeRule:
    """``progressive.hedging`` as the decision needs it."""

    enabled: bool = False
    factor: float = 2.0
    floor_seconds: float = 2.0

    def deadline(self, estimate: float) -> float:
        """Seconds after placement from which a point estimated at ``estimate`` is due."""
        return self.factor * estimate + self.floor_seconds


@dataclass(frozen=True)
class RunningPoint:
    """One point's current attempt on an edge, as far as hedging cares."""

    point: int
    edge: str
    # Monotonic seconds when it was placed, and its expected finish then (seconds after it).
    placed_at: float
    estimate: float
    # Sent to the edge (in a job), not waiting in the dispatcher's lane.
    sent: bool = True
    # Already hedged once: a point is duplicated at most once.
    hedged: bool = False


def finish_estimate(edge: EdgeStatus, edges: Sequence[EdgeStatus], tokens: float) -> Finish:
    """Expected finish of one more point of ``tokens`` on ``edge`` (the eft estimate), with the
    inputs it came from; an edge with no fitted rate gets the fleet's prior."""
    if edge.rate is not None:
        return finish_on(edge, tokens, edge.rate, source=edge.rate_source or "decode")
    return finish_on(edge, tokens, prior_curve(edges), source="prior")


def estimate_on(edge: EdgeStatus, edges: Sequence[EdgeStatus], tokens: float) -> float:
    """Expected finish of one more point of ``tokens`` on ``edge``, seconds."""
    return finish_estimate(edge, edges, tokens).seconds


def due(points: Iterable[RunningPoint], now: float, rule: HedgeRule) -> list[int]:
    """The points to hedge now: sent, not hedged yet, and past their deadline."""
    if not rule.enabled:
        return []
    return [
        p.point
        for p in points
        if p.sent and not p.hedged and now - p.placed_at > rule.deadline(p.estimate)
    ]


def next_due(points: Iterable[RunningPoint], rule: HedgeRule) -> float | None:
    """The monotonic time the next unhedged point becomes due (``None``: none can)."""
    times = [p.placed_at + rule.deadline(p.estimate) for p in points if not p.hedged]
    return min(times) if rule.enabled and times else None


def has_spare_slot(edge: EdgeStatus) -> bool:
    """A free sequence slot by the polled load and this gateway's count (1 when never polled)."""
    slots = edge.load.max_sequences if edge.load is not None else 1
    return busy_sequences(edge) < slots


def hedge_target(
    point: PointPlacement, running_on: str, edges: Sequence[EdgeStatus], policy: PlacementPolicy
) -> str | None:
    """The edge to duplicate ``point`` on, chosen by the placement policy among the usable
    edges other than ``running_on`` that have a free slot; ``None``: no spare capacity."""
    point = dataclasses.replace(point, excluded=point.excluded | {running_on})
    spare = [edge for edge in edges if usable(edge, point) and has_spare_slot(edge)]
    if not spare:
        return None
    return policy.place(point, spare)
