"""Stop sequences over the merged progressive answer (``pice.stops``): the client never gets
text at or past a stop, however the text is split over deltas, headers and points."""

from __future__ import annotations

import pytest

from pice.stops import StopMatcher


def run(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    scanner = StopMatcher(stops)
    out = [scanner.feed(piece) for piece in pieces]
    out.append(scanner.flush())
    return out, scanner.stopped


def test_no_stops_passes_text_through_unchanged() -> None:
    out, stopped = run([], ["a", "bc", ""])
    assert out == ["a", "bc", "", ""]
    assert not stopped


def test_stop_inside_one_piece_cuts_before_it() -> None:
    out, stopped = run(["END"], ["hello END world"])
    assert "".join(out) == "hello "
    assert stopped


def test_stop_split_over_pieces_is_never_sent_in_part() -> None:
    out, stopped = run(["END"], ["hello E", "N", "D world"])
    assert out[0] == "hello ", "the possible start of a stop is held back"
    assert out[1] == ""
    assert "".join(out) == "hello "
    assert stopped


def test_held_text_is_released_when_the_match_fails() -> None:
    out, stopped = run(["END"], ["hello E", "NX more"])
    assert out == ["hello ", "ENX more", ""]
    assert not stopped


def test_held_tail_is_released_at_the_end() -> None:
    out, stopped = run(["END"], ["the E"])
    assert out == ["the ", "E"]
    assert not stopped


def test_earliest_of_several_stops_wins() -> None:
    out, _ = run(["zz", "b"], ["a", "bzz"])
    assert "".join(out) == "a"


def test_stop_at_the_very_start_sends_nothing() -> None:
    out, stopped = run(["1."], ["1. **Title**:"])
    assert "".join(out) == ""
    assert stopped


def test_nothing_after_a_stop_even_if_fed() -> None:
    scanner = StopMatcher(["x"])
    assert scanner.feed("abx") == "ab"
    assert scanner.feed("more") == ""
    assert scanner.flush() == ""


def test_empty_stop_strings_are_ignored() -> None:
    out, stopped = run(["", "Q"], ["abc"])
    assert "".join(out) == "abc"
    assert not stopped


def test_overlapping_prefix_is_held_at_its_longest() -> None:
    # "aab" contains "ab" at index 1; after "aa" the tail "a" could still start it.
    out, stopped = run(["ab"], ["a", "a", "b"])
    assert out[:2] == ["", "a"]
    assert "".join(out) == "a"
    assert stopped


@pytest.mark.parametrize("cut", range(1, 30))
def test_any_split_of_the_text_gives_the_same_answer(cut: int) -> None:
    text = "1. **Alpha**: one two\n2. **Beta**: STOP here\n"
    whole, _ = run(["STOP", "\n3."], [text])
    split, _ = run(["STOP", "\n3."], [text[:cut], text[cut:]])
    assert "".join(split) == "".join(whole) == "1. **Alpha**: one two\n2. **Beta**: "
