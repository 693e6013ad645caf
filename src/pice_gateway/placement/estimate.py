"""When would an edge finish a point, and what would the point cost the others there: the pure
estimators the ``eft`` policy minimises.

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

Delay to the others. The point also slows every sequence it decodes beside: for its
``d = L / per_sequence(b)`` seconds the ``n = b − 1`` others step at ``per_sequence(b)``
instead of ``per_sequence(n)``, so each loses ``d · (per_sequence(n) − per_sequence(b))``
tokens, which it makes up at its own rate ``per_sequence(n)``:

    added_delay = n · d · (1 − per_sequence(b) / per_sequence(n))

(with the default model ``n · d · α / (1 + α·n)``). On a full edge the point, once admitted,
keeps the batch at ``M`` where it would have shrunk to ``M − 1``, so ``n = M − 1``; the wait
delays nobody (sequences queued after it would have waited anyway). The sum assumes the others
run for all of ``d`` (under load they are replaced as they finish, so the batch stays that
large); it errs high for an edge about to drain.
"""

from __future__ import annotations

from dataclasses import dataclass

from pice_gateway.placement.base import EdgeStatus, busy_sequences
from pice_gateway.placement.rate import RateCurve, RateSource

# Tokens a point is expected to decode before any was observed: the edge bench's expansions
# averaged 24 (189 tokens over 8 points at max_tokens 64); rounded up for longer budgets.
DEFAULT_POINT_TOKENS = 32.0


def _slots(edge: EdgeStatus) -> int:
    return max(1, edge.load.max_sequences) if edge.load is not None else 1


@dataclass(frozen=True)
class Finish:
    """An expected finish and what it was computed from: the record that lets an operator
    tell which input erred when the estimate and the outcome differ."""

    seconds: float  # rtt + wait + decode
    tokens: float  # the point's expected length
    busy: int  # sequences on the edge, running or queued (:func:`~.base.busy_sequences`)
    slots: int  # its sequence slots
    single_rate: float  # r1 of the curve used, tokens/s
    alpha: float  # its batching slope
    rtt: float  # seconds
    wait: float  # seconds until a slot frees (0 with one free)
    decode: float  # seconds decoding, at the batch the point joins
    rate_source: RateSource  # what the curve was fitted to, or "prior" (:func:`~.eft.prior_curve`)


def finish_on(
    edge: EdgeStatus, tokens: float, curve: RateCurve, *, source: RateSource = "decode"
) -> Finish:
    """When ``edge`` would finish one more point of ``tokens`` tokens, with its inputs."""
    slots = _slots(edge)
    busy = busy_sequences(edge)
    if busy < slots:
        wait, batch = 0.0, busy + 1
    else:
        wait, batch = (busy - slots + 1) * tokens / curve.aggregate(slots), slots
    rtt = edge.rtt or 0.0
    decode = tokens / curve.per_sequence(batch)
    return Finish(
        seconds=rtt + wait + decode,
        tokens=tokens,
        busy=busy,
        slots=slots,
        single_rate=curve.single,
        alpha=curve.alpha,
        rtt=rtt,
        wait=wait,
        decode=decode,
        rate_source=source,
    )


def expected_finish(edge: EdgeStatus, tokens: float, curve: RateCurve) -> float:
    """Seconds from now until ``edge`` would finish one more point of ``tokens`` tokens."""
    return finish_on(edge, tokens, curve).seconds


def added_delay(edge: EdgeStatus, tokens: float, curve: RateCurve) -> float:
    """Seconds one more point of ``tokens`` adds to the sequences decoding beside it on
    ``edge``, summed over them (see the module doc)."""
    others = min(busy_sequences(edge), _slots(edge) - 1)
    if others <= 0:
        return 0.0
    batch = others + 1
    decoding = tokens / curve.per_sequence(batch)
    return others * decoding * (1.0 - curve.per_sequence(batch) / curve.per_sequence(others))
