"""Length-aware placement (``eft-length``): a point expected to be short goes to the slowest edge
that finishes it no later than a long point would finish on the best edge; the rest go where
they finish first.

Why. With every point's length known, the best split of the work sends long points to fast
edges kept at small batches and short ones to slow edges (docs/benchmarks.md, "Scheduling": a
fluid estimate puts the p95 at 0.60× least-loaded with lengths known, 0.79× without). The rule
gets there greedily. A request's latency is set by its longest point, so a short point may
take as long as a long one needs without delaying its request: the deadline is when a
*reference* point, ``reference_factor`` × the mean expected length, would finish on the edge
that finishes it first now (:func:`~.estimate.expected_finish`, so it grows with load). Among
the edges that finish this point (its ``expected_tokens``) by then, the one with the lowest
single-sequence rate wins (the slowest device), keeping the fast edges' slots free for the
points that need them. A point no edge finishes by then is long, and goes to its earliest
finish: the point's own finish, not ``eft``'s score with the delay it adds to the others,
because a long point is the one that sets its request's latency.

Tried in ``pice sim`` with true lengths (seed 0): a fixed deadline of 2.5 s (the first rule
tried, ``benchmarks/sim_variants.py``) did well at 80% load (p95 6.27 s) but at 50% sent short
points to Nanos while the fast edges idled (5.62 s against eft's 4.81 s); the load-following
deadline gives 4.15 / 6.30 / 7.85 s at 50 / 80 / 90%. Of reference factors 1.0, 1.3, 1.6, 2.0
and 2.4, 1.3 was the best at 80% and tied at 50% (the sim's lengths: mean 40, at most 96).

It is only as good as ``expected_tokens``. Given the same number for every point (the gateway's
running mean, all it has today), every point is placed as a mean one, on the slowest edge that
finishes it within 1.3× the best edge's time, long or not: in ``pice sim`` 1–2% worse than
``eft``. It pays only with a per-point length prediction, which the gateway does not make
(docs/benchmarks.md, "Length-aware placement": no signal measured on the recorded answers
predicts a point's length well; one explaining 15% of the variance makes it 2–3% better than
``eft``, the true lengths 11%).

The mean expected length is this policy's running mean of the ``expected_tokens`` it was asked
to place (starting at ``default_tokens``); ties go to the fewest in-flight sequences, then the
edge used least recently.
"""

from __future__ import annotations

from collections.abc import Sequence

from pice_gateway.placement.base import EdgeStatus, PointPlacement, usable
from pice_gateway.placement.eft import prior_curve
from pice_gateway.placement.estimate import DEFAULT_POINT_TOKENS, expected_finish
from pice_gateway.placement.rate import ewma

DEFAULT_REFERENCE_FACTOR = 1.3


class LengthAwarePolicy:
    def __init__(
        self,
        *,
        reference_factor: float = DEFAULT_REFERENCE_FACTOR,
        default_tokens: float = DEFAULT_POINT_TOKENS,
    ) -> None:
        self._factor = reference_factor
        self._default_tokens = default_tokens
        self._mean_tokens = default_tokens

    @property
    def reference_tokens(self) -> float:
        """The length of the reference point that sets the deadline."""
        return self._factor * self._mean_tokens

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        tokens = point.expected_tokens or self._default_tokens
        self._mean_tokens = ewma(self._mean_tokens, tokens, weight=0.05)
        prior = prior_curve(edges)
        candidates = [edge for edge in edges if usable(edge, point)]
        if not candidates:
            return None
        finish = {e.name: expected_finish(e, tokens, e.rate or prior) for e in candidates}
        reference = self.reference_tokens
        deadline = min(expected_finish(e, reference, e.rate or prior) for e in candidates)
        in_time = [edge for edge in candidates if finish[edge.name] <= deadline]
        if in_time:
            slowest = min(
                in_time, key=lambda e: ((e.rate or prior).single, e.in_flight, e.last_placed)
            )
            return slowest.name
        return min(candidates, key=lambda e: (finish[e.name], e.in_flight, e.last_placed)).name
