"""When would an edge finish a point: the pure estimator the ``eft`` policy minimises.

Finish time of one more point of ``L`` expected tokens on an edge with ``busy`` sequences (the
larger of the polled running + queued and this gateway's in-flight count) out of ``M`` slots,
with the edge's rate at a batch size from :mod:`.rate` and ``rtt`` the poller's measured round
trip:

    finish = rtt + wait + L / per_sequence(b)
    free slot (busy < M):   wait = 0,                      b = busy + 1
    full (busy ≥ M):        wait = (busy − M + 1)·L / aggregate(M),   b = M

The wait counts the sequences ahead of it as decoded by the full batch: slots free at
``aggregate(M) / L`` a second. The running sequences speeding up as the batch shrinks is left
out (the estimate errs slow alike on every edge), and prefill is not modelled separately.
"""

from __future__ import annotations

from pice_gateway.placement.base import EdgeStatus, busy_sequences
from pice_gateway.placement.rate import RateCurve

# Tokens a point is expected to decode before any was observed: the edge bench's expansions
# averaged 24 (189 tokens over 8 points at max_tokens 64); rounded up for longer budgets.
DEFAULT_POINT_TOKENS = 32.0


def expected_finish(edge: EdgeStatus, tokens: float, curve: RateCurve) -> float:
    """Seconds from now until ``edge`` would finish one more point of ``tokens`` tokens."""
    slots = max(1, edge.load.max_sequences) if edge.load is not None else 1
    busy = busy_sequences(edge)
    if busy < slots:
        wait, batch = 0.0, busy + 1
    else:
        wait, batch = (busy - slots + 1) * tokens / curve.aggregate(slots), slots
    return (edge.rtt or 0.0) + wait + tokens / curve.per_sequence(batch)
