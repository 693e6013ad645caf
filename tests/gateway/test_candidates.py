"""Candidate selection: the first candidate to speak is streamed, the others never shown."""

from __future__ import annotations

from pice_gateway.progressive.candidates import FirstCandidate
from pice_gateway.progressive.events import PointDelta, PointDone


def delta(candidate: int, text: str) -> PointDelta:
    return PointDelta(point=0, source="e1", candidate=candidate, text=text)


def done(candidate: int, text: str) -> PointDone:
    return PointDone(0, "e1", candidate, text, "stop", 3, -0.5)


def test_first_candidate_streams_the_first_speaker_only() -> None:
    selector = FirstCandidate()
    assert selector.delta(delta(1, "One")) == "One"
    assert selector.delta(delta(0, "Zero")) == ""
    assert selector.delta(delta(1, " more")) == " more"
    assert selector.done(done(0, "Zero body")) is None
    chosen = selector.done(done(1, "One more"))
    assert chosen is not None
    assert (chosen.candidate, chosen.text) == (1, "One more")


def test_a_candidate_that_finishes_without_deltas_can_be_chosen() -> None:
    selector = FirstCandidate()
    assert selector.done(done(2, "")) == done(2, "")
    assert selector.delta(delta(0, "late")) == ""
