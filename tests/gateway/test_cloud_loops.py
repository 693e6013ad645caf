"""``LoopCut``: a whole cloud answer that repeats a passage stops at the end of the sentence
where the repeat closes, however the answer is split into pieces; other answers pass whole."""

from __future__ import annotations

import random

import pytest

from pice_gateway.cloud_loops import TAIL_WORDS, LoopCut

# The 1.5B cloud's own answers (benchmarks/results: pice-frame, hetero/frame-on-30q), the
# first ending in a repeated sentence (``ROMAN + ROMAN_REPEAT``, one sentence left out here),
# the second a loop of a paragraph cut at 768 tokens.
ROMAN = (
    "If the Roman Empire had never fallen, it would have had a different history and culture. "
    "The Roman Empire was a powerful and influential empire that lasted for over 1,400 years, "
    "from 27 BC to 476 AD.\n\nIf the Roman Empire had never fallen, it would have been a "
    "different world. The Roman Empire would have been a more powerful and influential "
    "empire, and it would have had a different impact on the world."
)
ROMAN_REPEAT = (
    " The Roman Empire would have been a more powerful and influential empire, and it would "
    "have had a different impact on the world."
)
CREW = "Good morning, my crew! As we set sail on this adventure, remember our mission.\n"
CREW_LOOP = (
    "We are not just looking for treasure, we are looking for a way to make a difference in "
    "the world. We are looking for a way to make a positive impact on the lives of others.\n"
)
PROSE = (
    "Improving time management involves prioritizing tasks, setting realistic goals and "
    "using a planner. Regular breaks help manage stress and improve focus. Reviewing your "
    "progress helps identify areas where you can improve."
)


def _pieces(text: str, rng: random.Random | None) -> list[str]:
    """``text`` as a stream: word by word (a space before each), or cut at random points."""
    if rng is None:
        words = text.split(" ")
        return [words[0]] + [" " + word for word in words[1:]]
    cuts = sorted(rng.sample(range(1, len(text)), k=min(40, len(text) - 1)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def _cut(pieces: list[str], quoted: str = "") -> tuple[str, int | None]:
    """What the client reads, and after how many pieces the stream was stopped."""
    cut, shown = LoopCut(quoted=quoted), []
    for n, piece in enumerate(pieces, start=1):
        text, stop = cut.feed(piece)
        shown.append(text)
        if stop:
            assert cut.looped
            return "".join(shown), n
    assert not cut.looped
    return "".join(shown), None


SPLITS = [None, *range(5)]


@pytest.mark.parametrize("seed", SPLITS)
def test_a_repeated_sentence_ends_where_its_sentence_does(seed: int | None) -> None:
    rng = None if seed is None else random.Random(seed)
    pieces = _pieces(ROMAN + ROMAN_REPEAT * 6, rng)
    shown, stopped = _cut(pieces)
    assert shown == ROMAN + ROMAN_REPEAT, "the second copy to its full stop, the third never"
    assert stopped is not None
    assert stopped < len(pieces) * 0.7


@pytest.mark.parametrize("seed", SPLITS)
def test_a_looping_paragraph_is_shown_twice_then_stops(seed: int | None) -> None:
    rng = None if seed is None else random.Random(seed)
    pieces = _pieces(CREW + CREW_LOOP * 10, rng)
    shown, stopped = _cut(pieces)
    assert shown == CREW + CREW_LOOP + CREW_LOOP.rstrip("\n")
    assert stopped is not None
    assert stopped < len(pieces) / 3


@pytest.mark.parametrize("seed", SPLITS)
def test_an_answer_without_a_loop_passes_whole(seed: int | None) -> None:
    rng = None if seed is None else random.Random(seed)
    answer = CREW + PROSE + "\n\n" + PROSE.replace("Regular", "Short")
    assert _cut(_pieces(answer, rng)) == (answer, None)


def test_a_loop_with_no_sentence_end_stops_after_the_tail_allowance() -> None:
    unit = "and then the ship sailed on past the island of the parrots " * 2
    words = (unit * 8).split(" ")
    shown, stopped = _cut([w + " " for w in words])
    # 24 words a copy, two copies close the loop; then at most the allowance more.
    assert stopped is not None
    assert 48 < len(shown.split()) <= 48 + TAIL_WORDS + 1


@pytest.mark.parametrize("seed", SPLITS)
def test_a_repetition_the_user_asked_for_is_not_cut(seed: int | None) -> None:
    sentence = "The river flows quietly past the old stone mill at dawn."
    asked = f"Write the sentence '{sentence}' twenty times in a row, as one paragraph."
    answer = "Sure, here it is: " + " ".join([sentence] * 20)
    rng = None if seed is None else random.Random(seed)
    assert _cut(_pieces(answer, rng), quoted=asked) == (answer, None)
    # The same answer to a request that does not hold the sentence is a loop.
    shown, stopped = _cut(_pieces(answer, rng), quoted="Describe a river at dawn.")
    assert stopped is not None
    assert shown.count(sentence) < 20
    # A loop of the cloud's own passage stops though the user asked for something else twice.
    looping = ROMAN + ROMAN_REPEAT * 6
    shown, stopped = _cut(_pieces(looping, rng), quoted=f"{asked}\n{ROMAN_REPEAT[:40]}")
    assert stopped is not None
    assert shown == ROMAN + ROMAN_REPEAT


def test_once_the_users_passage_repeats_the_rest_is_shown_as_it_comes() -> None:
    sentence = "Our team values honesty and we help each other grow every day."
    cut = LoopCut(quoted=f"Repeat: {sentence}")
    for _ in range(4):  # 13 words: four copies make a loop
        assert cut.feed(sentence + " ") == (sentence + " ", False)
    assert cut.requested
    assert not cut.looped
    tail = ROMAN_REPEAT * 8
    assert cut.feed(tail) == (tail, False), "the watch has stood down for this answer"
