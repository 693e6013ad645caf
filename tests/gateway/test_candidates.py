"""Candidate selection: the first point streams one candidate live; later points show the
ensemble's choice, whole and once."""

from __future__ import annotations

from pice_gateway.progressive.candidates import (
    Attempt,
    EnsembleSelector,
    FirstCandidate,
    ensemble_selector,
)
from pice_gateway.progressive.events import PointDelta, PointDone


def delta(candidate: int, text: str, point: int = 0) -> PointDelta:
    return PointDelta(point=point, source="e1", candidate=candidate, text=text)


def done(
    candidate: int,
    text: str | None,
    point: int = 0,
    logprob: float = -0.5,
    finish: str = "stop",
) -> PointDone:
    return PointDone(point, "e1", candidate, text, finish, 3, logprob)


def attempt(point: int, candidates: int = 3) -> Attempt:
    return Attempt(point, "e1", candidates, "Limit caffeine", "How can I sleep better?")


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


def test_the_first_point_and_a_single_candidate_stream_live() -> None:
    assert isinstance(ensemble_selector(attempt(0)), FirstCandidate)
    assert isinstance(ensemble_selector(attempt(2, candidates=1)), FirstCandidate)
    selector = ensemble_selector(attempt(0))
    assert selector.delta(delta(0, "Avoid")) == "Avoid"
    assert selector.done(done(0, "Avoid")) == done(0, "Avoid")
    assert selector.scores() == []


AGREE = "Avoid coffee after noon; caffeine lingers for hours."


def feed(selector: EnsembleSelector, bodies: dict[int, str], point: int = 1) -> str:
    """Every candidate's words as deltas, interleaved as an edge sends them; what was shown."""
    shown = ""
    split = {c: text.split(" ") for c, text in bodies.items()}
    for n in range(max(len(words) for words in split.values())):
        for c, words in split.items():
            if n < len(words):
                shown += selector.delta(delta(c, (" " if n else "") + words[n], point))
    return shown


def test_later_points_are_held_back_and_the_winner_appears_once_whole() -> None:
    selector = EnsembleSelector(attempt(1))
    bodies = {0: "Coffee grows in Brazil.", 1: AGREE, 2: "Avoid coffee after lunch; it lingers."}
    assert feed(selector, bodies) == "", "nothing is shown before the choice"
    assert selector.done(done(2, bodies[2], 1, -0.9)) is None
    assert selector.done(done(0, bodies[0], 1, -0.1)) is None
    chosen = selector.done(done(1, bodies[1], 1, -0.6))
    assert chosen is not None
    assert (chosen.candidate, chosen.text) == (1, AGREE)
    # After the choice nothing more is shown, from any candidate.
    assert selector.delta(delta(1, " more", 1)) == ""
    assert selector.done(done(1, AGREE, 1)) is None
    assert [s.candidate for s in selector.scores()] == [0, 1, 2]
    assert max(selector.scores(), key=lambda s: s.score).candidate == 1


def test_the_winners_text_comes_from_its_deltas_when_the_source_sends_no_body() -> None:
    selector = EnsembleSelector(attempt(1, candidates=2))
    feed(selector, {0: "Tea is a drink.", 1: AGREE})
    assert selector.done(done(0, None, 1, -0.5)) is None
    chosen = selector.done(done(1, None, 1, -0.5))
    assert chosen is not None
    assert chosen.text in ("Tea is a drink.", AGREE)
    assert chosen.text == {0: "Tea is a drink.", 1: AGREE}[chosen.candidate]


def test_a_failed_candidate_is_never_chosen() -> None:
    selector = EnsembleSelector(attempt(1, candidates=3))
    feed(selector, {0: AGREE, 1: AGREE, 2: AGREE})
    assert selector.done(done(0, AGREE, 1, -0.1, finish="error")) is None
    assert selector.done(done(1, "", 1, -0.1)) is None
    chosen = selector.done(done(2, AGREE, 1, -2.0))
    assert chosen is not None
    assert chosen.candidate == 2
