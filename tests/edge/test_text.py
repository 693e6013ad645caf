"""Stop strings and UTF-8 assembly, without a model."""

from __future__ import annotations

from edge_agent.engine.text import StopMatcher, TextAssembler


def feed_all(matcher: StopMatcher, pieces: list[str]) -> str:
    return "".join(matcher.feed(p) for p in pieces) + matcher.flush()


def test_stop_string_split_across_pieces_is_removed() -> None:
    m = StopMatcher(["\n2."])
    assert feed_all(m, ["Sleep well", ".\n", "2", ". Eat"]) == "Sleep well."
    assert m.stopped


def test_partial_match_that_fails_is_released() -> None:
    m = StopMatcher(["\n2."])
    out = [m.feed("a\n"), m.feed("3 b")]
    assert out == ["a", "\n3 b"]
    assert m.flush() == ""
    assert not m.stopped


def test_held_back_text_is_flushed_at_the_end() -> None:
    m = StopMatcher(["END"])
    assert m.feed("the E") == "the "
    assert m.flush() == "E"


def test_earliest_stop_wins_and_nothing_after_it_is_emitted() -> None:
    m = StopMatcher(["b", "a"])
    assert m.feed("xxabyy") == "xx"
    assert m.feed("more") == ""


def test_no_stops_passes_everything() -> None:
    assert feed_all(StopMatcher([]), ["a", "\n", "b"]) == "a\nb"


def test_utf8_character_split_across_tokens() -> None:
    text = "naïve ☕"
    data = text.encode()
    asm = TextAssembler([])
    pieces = [asm.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(pieces) + asm.finish() == text
    assert all("\ufffd" not in p for p in pieces)
    assert asm.text == text


def test_assembler_stops_on_text() -> None:
    asm = TextAssembler(["\n"])
    assert asm.feed(b"one") == "one"
    assert asm.feed(b" two\nthree") == " two"
    assert asm.stopped
    assert asm.finish() == ""
    assert asm.text == "one two"
