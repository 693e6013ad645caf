"""What of a point's body is shown: loops stopped at their first turn, cut bodies ended on a
full sentence (``progressive/tidy.py``)."""

from __future__ import annotations

import pytest

from pice.loops import copies, loop_start
from pice_gateway.progressive.tidy import ELLIPSIS, Tidied, tidy, visible

# Written by the 0.5B edge model in a committed bench run (counterfactual-03).
LOOPED = (
    "The Roman Empire had never fallen because it was a single, single, single, single, "
    "single, single, single, single, single, single, single, single,"
)
# Cut at its 76-token share in the same run (knowledge-02).
CUT = (
    "This response involves producing antibodies. Activating white blood cells helps to "
    "activate the immune system's defenses. Destroying virus particles, which are the raw "
    "material of the virus, helps to"
)


def test_a_one_word_loop_is_found_at_its_second_copy() -> None:
    start = loop_start(LOOPED)
    assert start is not None
    assert LOOPED[:start] == "The Roman Empire had never fallen because it was a single, "


@pytest.mark.parametrize(
    "text",
    [
        "Say no, no, no, no to that.",  # emphasis: a word needs eight copies
        "Walk, then run, then walk, then run, then rest.",  # two copies of a phrase
        "It is very, very good.",
        "Step 1, step 2, step 3, step 4.",  # the numbers differ
    ],
)
def test_repetition_that_is_prose_is_not_a_loop(text: str) -> None:
    assert loop_start(text) is None
    assert tidy(text, cut=False) == Tidied(text)


def test_a_phrase_said_four_times_is_a_loop_and_case_and_punctuation_do_not_hide_it() -> None:
    text = "Rest well. It helps you rest. It helps you rest! it helps you rest. It helps you rest."
    start = loop_start(text)
    assert start is not None
    assert text[:start] == "Rest well. It helps you rest. "
    assert copies(1) == 8
    assert copies(4) == 4


def test_a_body_still_decoding_is_shown_up_to_its_loop() -> None:
    assert visible(LOOPED) == "The Roman Empire had never fallen because it was a single,"
    assert visible(CUT) == CUT


def test_a_cut_body_ends_on_its_last_full_sentence() -> None:
    shown = tidy(CUT, cut=True)
    assert shown.trimmed == "length"
    assert shown.text.endswith("the immune system's defenses.")
    assert CUT.startswith(shown.text)


def test_a_cut_body_without_a_full_sentence_is_marked_with_an_ellipsis() -> None:
    shown = tidy("Stretch your arms with your", cut=True)
    assert shown == Tidied("Stretch your arms with your" + ELLIPSIS, "length")
    # A trailing comma goes before the mark.
    assert tidy("First, second,", cut=True).text == "First, second" + ELLIPSIS


def test_a_looped_body_ends_on_the_last_sentence_before_the_loop() -> None:
    text = "Rome kept its roads. It was a single, " + "single, " * 10
    assert tidy(text, cut=False) == Tidied("Rome kept its roads.", "loop")
    assert tidy(LOOPED, cut=True) == Tidied(
        "The Roman Empire had never fallen because it was a single" + ELLIPSIS, "loop"
    )


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("Use it (e.g. at work) daily. More", "Use it (e.g. at work) daily."),
        ("Made in the U.S. by hand. More", "Made in the U.S. by hand."),
        ("It costs 3.5 dollars. Then", "It costs 3.5 dollars."),
        ('He said "stop." Then he', 'He said "stop."'),
        ("Is it safe? Mostly, but", "Is it safe?"),
    ],
)
def test_sentence_ends_skip_abbreviations_and_decimals(body: str, shown: str) -> None:
    assert tidy(body, cut=True).text == shown


def test_text_already_sent_is_never_taken_back() -> None:
    # 40 characters went out live; the last full sentence ends before them.
    body = "One sentence. Then a long clause that was streamed and then cut"
    shown = tidy(body, cut=True, floor=40)
    assert shown.text == body + ELLIPSIS
    assert tidy(LOOPED, cut=False, floor=len(LOOPED) - 5).text.startswith(LOOPED[:-5])


def test_a_finished_body_without_a_loop_is_shown_as_written() -> None:
    assert tidy("Fine. But no full stop at the end", cut=False) == Tidied(
        "Fine. But no full stop at the end"
    )
