"""The filters that keep bad teacher expansions out of the training data."""

from __future__ import annotations

import pytest

from edge_agent.prompts import BODY_MAX_WORDS, SYSTEM_PROMPT
from pice_tune.filters import (
    Expansion,
    duplicate_points,
    longest_common_run,
    reject_reason,
)

QUESTION = "How would daily life differ if the day lasted thirty hours?"
TITLES = ("Sleep schedules", "Work hours")


def expansion(body: str, *, finish: str | None = "stop", index: int = 0) -> Expansion:
    return Expansion(QUESTION, TITLES, index, body, finish)


def test_a_good_expansion_is_kept() -> None:
    assert reject_reason(expansion("People would sleep in two shifts, with a long nap.")) is None


@pytest.mark.parametrize(
    ("body", "finish", "reason"),
    [
        ("", "stop", "empty"),
        ("  ** ", "stop", "empty"),
        ("People would sleep in two shifts, with a", "stop", "truncated"),
        ("People would sleep in two shifts.", "length", "truncated"),
        ("Sleep more. Sleep more now. Sleep more now.", "stop", "repeat"),
        ("It is a long day and a long day and a long day and a long day.", "stop", "repeat"),
        ("If the day lasted thirty hours, people would sleep more.", "stop", "restated_premise"),
        ("To cope, if the day lasted thirty hours people nap.", "stop", "restated_premise"),
        ("is crucial for staying rested on longer days.", "stop", "fragment"),
        ("Sleep schedules.", "stop", "echoed_title"),
        ("People " + " ".join(f"w{i}" for i in range(60)) + ".", "stop", "too_long"),
    ],
)
def test_bad_expansions_are_dropped_with_their_reason(body: str, finish: str, reason: str) -> None:
    assert reject_reason(expansion(body, finish=finish)) == reason


def test_the_word_limit_is_the_edge_prompts() -> None:
    at_limit = "Naps " + " ".join(f"w{i}" for i in range(BODY_MAX_WORDS - 1)) + "."
    assert reject_reason(expansion(at_limit)) is None
    assert reject_reason(expansion("More " + at_limit)) == "too_long"
    assert f"at most {BODY_MAX_WORDS} words" in SYSTEM_PROMPT


def test_a_short_shared_phrase_is_not_a_restated_premise() -> None:
    # "the day lasted" (3 words) is a reference to the question, not a copy of its premise.
    assert (
        reject_reason(expansion("Because the day lasted longer, shops would open later.")) is None
    )


def test_spelling_variants_still_count_as_a_restated_premise() -> None:
    e = Expansion(
        "How can I keep a houseplant alive while travelling for two weeks?",
        ("Water",),
        0,
        "To keep a houseplant alive while traveling for two weeks, water it.",
        "stop",
    )
    assert reject_reason(e) == "restated_premise"


def test_longest_common_run_counts_consecutive_words() -> None:
    assert longest_common_run(["a", "b", "c", "d"], ["x", "b", "c", "d", "y"]) == 3
    assert longest_common_run(["a", "b"], ["b", "a"]) == 1
    assert longest_common_run([], ["a"]) == 0


def test_duplicate_points_drop_the_later_copy() -> None:
    bodies = ["Sleep in shifts.", "Work longer days.", "sleep in  SHIFTS."]
    assert duplicate_points(bodies) == {2}
