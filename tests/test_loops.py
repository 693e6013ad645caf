"""``pice.loops``: what counts as a loop, and the streaming watch agreeing with the whole-text
search however the text is split into pieces."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from pice.loops import (
    LOOP_UNIT,
    PASSAGES,
    PHRASES,
    LoopRule,
    LoopWatch,
    copies,
    loop_start,
    quotes,
    word_key,
)

TEXTS = [
    "It was a single," + " single," * 12,
    "Rest well. It helps you rest. It helps you rest! it helps you rest. It helps you rest.",
    "Say no, no, no, no to that.",
    "Walk, then run, then walk, then run, then rest.",
    "a b c d e f a b c d e f a b c d e f a b c d e f tail",  # a six-word unit, four times
    "a b c d e f g a b c d e f g a b c d e f g a b c d e f g",  # seven words: too long a unit
    "Step 1, step 2, step 3, step 4, step 5, step 6, step 7, step 8.",
]


def _watch_trips(text: str, cuts: list[int]) -> int | None:
    """Feed ``text`` in pieces split at ``cuts``; the length fed when the watch tripped."""
    watch = LoopWatch()
    bounds = [0, *sorted(cuts), len(text)]
    for start, end in itertools.pairwise(bounds):
        if watch.feed(text[start:end]):
            return end
    return None


@pytest.mark.parametrize("text", TEXTS)
def test_the_watch_trips_on_the_word_that_closes_a_loop_however_the_text_is_split(
    text: str,
) -> None:
    text += " "  # generation goes on: the last word is complete
    tripped = _watch_trips(text, list(range(1, len(text))))  # one character at a time
    if loop_start(text) is None:
        assert tripped is None
        return
    assert tripped is not None
    fed = text[:tripped]
    assert loop_start(fed) is not None
    assert loop_start(" ".join(fed.split()[:-1])) is None, "not a word later than needed"
    rng = random.Random(0)
    for _ in range(20):
        cuts = rng.sample(range(1, len(text)), k=min(12, len(text) - 1))
        assert _watch_trips(text, cuts) is not None


def test_what_counts_as_a_loop() -> None:
    assert loop_start(TEXTS[0]) == len("It was a single, ")
    assert loop_start(TEXTS[1]) == len("Rest well. It helps you rest. ")
    assert loop_start(TEXTS[4]) == len("a b c d e f ")
    for prose in (TEXTS[2], TEXTS[3], TEXTS[5], TEXTS[6]):
        assert loop_start(prose) is None, prose


def test_a_word_completes_only_when_whitespace_follows_it() -> None:
    watch = LoopWatch()
    assert not watch.feed("x " * 7 + "x")  # the eighth "x" may still become "xylophone"
    assert watch.feed(" ")
    assert watch.feed("anything"), "once looping, it stays so"


def _periodic(words: list[str], unit: int) -> bool:
    """``words`` are copies of their first ``unit`` (the last one perhaps cut short)."""
    return all(words[k] == words[k - unit] for k in range(unit, len(words)))


def _loop_start_by_definition(text: str, rule: LoopRule = PHRASES) -> int | None:
    """The definition read literally: the earliest word ``i`` from which some unit of the rule's
    lengths is said ``rule.copies(unit)`` times in a row (and, where the rule excepts them, the
    run is not also a shorter phrase said over and over); the offset of its second copy."""
    spans = [(m.start(), word_key(m.group())) for m in re.finditer(r"\S+", text)]
    words = [key for _, key in spans]
    starts = [
        spans[i + unit][0]
        for unit in range(rule.min_unit, rule.max_unit + 1)
        for i in range(len(words) - unit * rule.copies(unit) + 1)
        if all(
            words[i + k * unit : i + (k + 1) * unit] == words[i : i + unit]
            for k in range(1, rule.copies(unit))
        )
        and not (
            rule.phrases_excepted
            and any(
                _periodic(words[i : i + unit * rule.copies(unit)], short)
                for short in range(1, rule.min_unit)
            )
        )
    ]
    return min(starts, default=None)


def test_the_phrase_rule_is_the_module_default() -> None:
    assert (PHRASES.min_unit, PHRASES.max_unit) == (1, LOOP_UNIT)
    assert [copies(unit) for unit in range(1, LOOP_UNIT + 1)] == [8, 4, 4, 4, 4, 4]


def test_the_linear_search_agrees_with_the_definition() -> None:
    rng = random.Random(7)
    vocab = ["a", "b", "c", "A,", "b.", "d"]
    found = 0
    for _ in range(3000):
        words: list[str] = []
        while len(words) < rng.randint(0, 40):
            if rng.random() < 0.3:  # a run of repeats of a short phrase
                unit = [rng.choice(vocab) for _ in range(rng.randint(1, 7))]
                words += unit * rng.randint(2, 9)
            else:
                words.append(rng.choice(vocab))
        text = " ".join(words)
        expected = _loop_start_by_definition(text)
        assert loop_start(text) == expected, text
        found += expected is not None
    assert 500 < found < 2900, "the random texts must hold loops and prose both"


# A passage rule small enough for random texts to hold its loops: units of 3 to 9 words,
# twice in a row over at least 10 words, phrases of 1 or 2 words excepted.
SMALL_PASSAGES = LoopRule(min_unit=3, max_unit=9, repeats=2, words=10, phrases_excepted=True)


def test_the_passage_search_agrees_with_the_definition_and_the_watch() -> None:
    rng = random.Random(11)
    vocab = ["a", "b", "c", "A,", "b.", "d", "e"]
    found = excepted = 0
    for _ in range(1500):
        words: list[str] = []
        while len(words) < rng.randint(0, 36):
            if rng.random() < 0.35:
                unit = [rng.choice(vocab) for _ in range(rng.randint(1, 10))]
                words += unit * (rng.randint(2, 4) if len(unit) > 2 else rng.randint(4, 14))
            else:
                words.append(rng.choice(vocab))
        text = " ".join(words)
        expected = _loop_start_by_definition(text, SMALL_PASSAGES)
        assert loop_start(text, SMALL_PASSAGES) == expected, text
        watch = LoopWatch(SMALL_PASSAGES)
        watch.feed(text + " ")
        assert watch.looping == (expected is not None), text
        found += expected is not None
        if watch.looping:  # the unit the watch names is said by the text, and is a loop's
            assert watch.unit is not None
            assert len(watch.loop_words()) == watch.unit
            assert quotes(text, watch.loop_words()), text
            again = watch.loop_words() * SMALL_PASSAGES.copies(watch.unit)
            second_copy = len(" ".join(watch.loop_words())) + 1
            assert loop_start(" ".join(again), SMALL_PASSAGES) == second_copy
        unexcepted = LoopRule(3, 9, 2, 10)
        excepted += expected is None and loop_start(text, unexcepted) is not None
    assert 300 < found < 1400, "the random texts must hold loops and prose both"
    assert excepted > 50, "and runs that only repeat a short phrase"


PARAGRAPH = (
    "We are not just looking for treasure, we are looking for a way to make a difference in "
    "the world. We are ready to work together to achieve our goal.\n"
)


def test_what_counts_as_a_passage_loop() -> None:
    opening = "Good morning, my crew! As we set sail, remember our mission.\n"
    looping = opening + PARAGRAPH * 3
    assert loop_start(looping, PASSAGES) == len(opening + PARAGRAPH)
    assert loop_start(looping) is None, "a paragraph is longer than a phrase"
    # Twice in a row is a loop only over 40 words: an 8-word sentence needs five copies.
    sentence = "Trees can also improve the air we breathe. "
    assert loop_start(sentence * 4, PASSAGES) is None
    assert loop_start(sentence * 5, PASSAGES) == len(sentence)
    # Runs of a short phrase are the phrase rule's, never the passage rule's: a table's rule
    # row, an array of zeros, a word said over and over.
    for phrases in (
        "| Name | Age |\n" + "| --- " * 40 + "|",
        "x = [" + "0, " * 80 + "0]",
        "It was a single," + " single," * 60,
    ):
        assert loop_start(phrases, PASSAGES) is None, phrases
        assert loop_start(phrases) is not None, phrases


def test_a_passage_is_quoted_from_any_of_its_words_on() -> None:
    sentence = "The river flows quietly past the old stone mill at dawn."
    asked = f"Write the sentence '{sentence}' twenty times in a row."
    unit = [word_key(w) for w in sentence.split()]
    assert quotes(asked, unit)
    for turn in range(1, len(unit)):  # where the watch saw the copies begin
        assert quotes(asked, unit[turn:] + unit[:turn])
    assert not quotes(asked, [*unit[:-1], "dusk"])
    assert not quotes(asked, [*unit, "the"]), "a longer unit is another passage"
    assert not quotes(asked, list(reversed(unit)))
    assert not quotes(asked, [])
    assert not quotes("", unit)


def test_the_watch_keeps_only_the_words_its_units_look_back_on() -> None:
    rule = LoopRule(min_unit=2, max_unit=5, repeats=2, words=4)
    watch = LoopWatch(rule)
    prose = " ".join(f"w{i}" for i in range(5000))
    assert not watch.feed(prose + " ")
    assert len(watch._words) == rule.max_unit + 1
    assert watch.loop_words() == []
    assert watch.feed("x y z x y z ")
    assert (watch.unit, watch.loop_words()) == (3, ["x", "y", "z"])
