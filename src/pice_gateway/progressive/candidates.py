"""Choosing among the candidates of one point: the seam where an ensemble plugs in.

An attempt at a point may decode several candidates (``/v1/expand``'s ``candidates``); the
answer shows one. A :class:`CandidateSelector` sees every candidate's deltas and completions
for one attempt and decides what reaches the merger; the run makes a fresh one per attempt, so
a failed attempt's candidates are dropped with it. Selectors are pure and synchronous, like the
merger they feed.

:class:`FirstCandidate` streams whichever candidate produces text first and finishes the point
when that candidate finishes; with one candidate per point (today's only case) it passes every
event through unchanged. A scoring selector (best ``logprob_mean``, a judge) would hold text
back from :meth:`~CandidateSelector.delta` and choose in :meth:`~CandidateSelector.done` once
every candidate has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pice_gateway.progressive.events import PointDelta, PointDone


class CandidateSelector(Protocol):
    def delta(self, event: PointDelta) -> str:
        """The part of ``event.text`` the answer may show now ("" to hold it back)."""
        ...

    def done(self, event: PointDone) -> PointDone | None:
        """The chosen candidate once the choice is final, else ``None``."""
        ...


SelectorFactory = Callable[[], CandidateSelector]


class FirstCandidate:
    """The first candidate to speak (or to finish) is the point's answer, streamed live."""

    def __init__(self) -> None:
        self._chosen: int | None = None

    def _choose(self, candidate: int) -> bool:
        if self._chosen is None:
            self._chosen = candidate
        return candidate == self._chosen

    def delta(self, event: PointDelta) -> str:
        return event.text if self._choose(event.candidate) else ""

    def done(self, event: PointDone) -> PointDone | None:
        return event if self._choose(event.candidate) else None
