"""What the cloud is doing for this gateway: the streams open on it, and its measured speed.

Every cloud stream a progressive run opens (the sketch, and the points the cloud expands) is
read through :class:`~pice_gateway.cloud_client.CloudTextStream`, which reports to the one
meter of the gateway: when it opened, when its first token came, and how many tokens it read
by its end. From that the meter keeps

- the streams open now, and how many of them are point expansions (cloud overflow's cap);
- the time to first token, an EWMA (the cloud's queue and prefill as a new stream sees them);
- the decode rate against the number of streams decoding at once, the same
  :class:`~pice_gateway.placement.rate.RateFit` model the gateway fits to edges: each finished
  stream gives one pair, its tokens per second after the first token and the mean number of
  open streams over that time (an integral of the open count, so a stream that ran beside two
  others for half its life and alone for the other half counts 2).

It sees only this gateway's streams. Cloud-only requests relayed as they are, other replicas
and other clients of the same cloud are not counted as open streams; they show up only as a
slower measured rate, which the fit's decay follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pice_gateway.placement.rate import RateCurve, RateFit, ewma

# A stream shorter than this many tokens says little about the decode rate (its time is mostly
# the gap between two chunks); its first-token time still counts.
MIN_RATE_TOKENS = 8


@dataclass
class StreamTicket:
    """One open stream, as the meter tracks it (returned by :meth:`CloudMeter.opened`)."""

    opened_at: float
    expansion: bool
    first_at: float | None = None
    # The open-streams integral when the first token came.
    area_at_first: float = 0.0
    closed: bool = False


class CloudMeter:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open = 0
        self._expansions = 0
        self._area = 0.0
        self._since = clock()
        self._fit = RateFit()
        self._ttft: float | None = None

    def _advance(self) -> float:
        now = self._clock()
        self._area += self._open * (now - self._since)
        self._since = now
        return now

    @property
    def open_streams(self) -> int:
        return self._open

    @property
    def open_expansions(self) -> int:
        """Open streams expanding a point (not sketches)."""
        return self._expansions

    @property
    def ttft(self) -> float | None:
        return self._ttft

    def curve(self) -> RateCurve | None:
        """The cloud's fitted rate vs concurrent streams; ``None`` before a stream finished."""
        return self._fit.curve()

    def opened(self, *, expansion: bool) -> StreamTicket:
        now = self._advance()
        self._open += 1
        self._expansions += int(expansion)
        return StreamTicket(opened_at=now, expansion=expansion)

    def first_token(self, ticket: StreamTicket) -> None:
        if ticket.first_at is not None or ticket.closed:
            return
        now = self._advance()
        ticket.first_at, ticket.area_at_first = now, self._area
        self._ttft = ewma(self._ttft, now - ticket.opened_at)

    def closed(self, ticket: StreamTicket, tokens: int) -> None:
        """The stream ended (read to its end, failed or cancelled) after ``tokens`` tokens."""
        if ticket.closed:
            return
        now = self._advance()
        ticket.closed = True
        self._open -= 1
        self._expansions -= int(ticket.expansion)
        if ticket.first_at is None or tokens < MIN_RATE_TOKENS or now <= ticket.first_at:
            return
        seconds = now - ticket.first_at
        batch = (self._area - ticket.area_at_first) / seconds
        # Tokens after the first, over the time after the first: the decode rate alone.
        per_stream = (tokens - 1) / seconds
        self._fit.observe(batch, per_stream * batch)

    def expected_finish(self, tokens: float) -> float | None:
        """Seconds until one more stream of ``tokens`` tokens would end, opened now beside the
        open ones; ``None`` while the cloud's rate is not measured."""
        curve = self.curve()
        if curve is None:
            return None
        return (self._ttft or 0.0) + tokens / curve.per_sequence(self._open + 1)
