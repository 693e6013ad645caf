"""Choosing among the candidates of one point: the seam where an ensemble plugs in.

An attempt at a point may decode several candidates (``/v1/expand``'s ``candidates``); the
answer shows one. A :class:`CandidateSelector` sees every candidate's deltas and completions
for one attempt and decides what reaches the merger; the run makes a fresh one per attempt
(from a :data:`SelectorFactory` given the :class:`Attempt`), so a failed attempt's candidates
are dropped with it. Selectors are pure and synchronous, like the merger they feed.

:class:`FirstCandidate` streams whichever candidate produces text first and finishes the point
when that candidate finishes; with one candidate it passes every event through unchanged.

:class:`EnsembleSelector` holds every candidate back and, once all of them finished, shows the
best by :mod:`~pice_gateway.progressive.ensemble`'s score, whole, in one piece. Holding back
costs no visible latency for any point but the first: the merger shows points in order, so
point ``i > 0`` waits for the points before it anyway. The first point streams live
(:func:`ensemble_selector` gives it a :class:`FirstCandidate`), and dispatch gives it one
candidate. The choice waits for *every* candidate of the attempt: dispatch either delivers all
of them (a candidate that ended in ``error`` is excluded by the score) or fails the attempt,
and then this selector is dropped with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from pice_gateway.progressive.accounting import CandidateReport
from pice_gateway.progressive.ensemble import Candidate, score_candidates, winner
from pice_gateway.progressive.events import PointDelta, PointDone


@dataclass(frozen=True)
class Attempt:
    """What a selector knows of the attempt it chooses for."""

    point: int
    source: str
    # Candidates the attempt decodes (what dispatch asked the edge for).
    candidates: int
    title: str
    question: str


class CandidateSelector(Protocol):
    def delta(self, event: PointDelta) -> str:
        """The part of ``event.text`` the answer may show now ("" to hold it back)."""
        ...

    def done(self, event: PointDone) -> PointDone | None:
        """The chosen candidate once the choice is final, else ``None``."""
        ...

    def scores(self) -> list[CandidateReport]:
        """Every candidate's score once the choice is final; ``[]`` when nothing was scored."""
        ...


SelectorFactory = Callable[[Attempt], CandidateSelector]


class FirstCandidate:
    """The first candidate to speak (or to finish) is the point's answer, streamed live."""

    def __init__(self, attempt: Attempt | None = None) -> None:
        self._chosen: int | None = None

    def _choose(self, candidate: int) -> bool:
        if self._chosen is None:
            self._chosen = candidate
        return candidate == self._chosen

    def delta(self, event: PointDelta) -> str:
        return event.text if self._choose(event.candidate) else ""

    def done(self, event: PointDone) -> PointDone | None:
        return event if self._choose(event.candidate) else None

    def scores(self) -> list[CandidateReport]:
        return []


class EnsembleSelector:
    """Buffers every candidate of the attempt and shows the best-scored one once all are done."""

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self._texts: dict[int, list[str]] = {}
        self._done: dict[int, PointDone] = {}
        self._scores: list[CandidateReport] = []
        self._decided = False

    def delta(self, event: PointDelta) -> str:
        if not self._decided:
            self._texts.setdefault(event.candidate, []).append(event.text)
        return ""

    def done(self, event: PointDone) -> PointDone | None:
        if self._decided or event.candidate in self._done:
            return None
        self._done[event.candidate] = event
        if len(self._done) < self._attempt.candidates:
            return None
        self._decided = True
        return self._choose()

    def scores(self) -> list[CandidateReport]:
        return list(self._scores)

    def _text(self, done: PointDone) -> str:
        # An edge reports the whole body; a source that does not, gave it as deltas.
        return done.text if done.text is not None else "".join(self._texts.get(done.candidate, []))

    def _choose(self) -> PointDone:
        finished = [self._done[index] for index in sorted(self._done)]
        scored = score_candidates(
            [
                Candidate(d.candidate, self._text(d), d.logprob_mean, d.finish_reason, d.model)
                for d in finished
            ],
            title=self._attempt.title,
            question=self._attempt.question,
        )
        self._scores = [
            CandidateReport(
                candidate=d.candidate,
                edge=d.source,
                score=s.score,
                logprob_mean=d.logprob_mean,
                agreement=s.agreement,
                relevance=s.relevance,
                tokens=d.tokens,
                finish_reason=d.finish_reason,
            )
            for d, s in zip(finished, scored, strict=True)
        ]
        best = self._done[winner(scored)]
        return replace(best, text=self._text(best))


def ensemble_selector(attempt: Attempt) -> CandidateSelector:
    """The run's selector: live for the first point or a single candidate, else the ensemble."""
    if attempt.point == 0 or attempt.candidates <= 1:
        return FirstCandidate(attempt)
    return EnsembleSelector(attempt)
