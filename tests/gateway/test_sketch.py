"""The sketch parser on the shapes small models actually write."""

from __future__ import annotations

import pytest

from pice.openai_protocol import ChatMessage
from pice_gateway.progressive.sketch import (
    SKETCH_SYSTEM_FRAMED,
    SKETCH_SYSTEM_OUTLINE,
    DirectText,
    FrameText,
    OutlineEnded,
    PointFound,
    SketchEvent,
    SketchParser,
    clean_title,
    sketch_messages,
)


def feed_all(parser: SketchParser, pieces: list[str]) -> list[SketchEvent]:
    events: list[SketchEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.close())
    return events


def points(events: list[SketchEvent]) -> list[str]:
    return [e.title for e in events if isinstance(e, PointFound)]


def direct(events: list[SketchEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, DirectText))


def test_numbered_outline_streamed_token_by_token() -> None:
    text = "1. Fixed schedule\n2) Dark room\n3. **Less caffeine**: it keeps you up\n4. Exercise"
    parser = SketchParser(max_points=8)
    events = feed_all(parser, list(text))
    assert points(events) == ["Fixed schedule", "Dark room", "Less caffeine", "Exercise"]
    assert parser.is_outline
    assert direct(events) == ""


def test_point_is_reported_as_soon_as_its_line_completes() -> None:
    parser = SketchParser(max_points=8)
    assert parser.feed("1. First poi") == []
    assert parser.feed("nt\n2. Sec") == [PointFound(0, "First point")]


def test_bullets_bold_preamble_details_and_trailing_text() -> None:
    text = (
        "Here is the outline:\n"
        "- **Hydration**\n"
        "  - drink water\n"
        "- Sleep - at least 8 hours\n"
        "\n"
        "- Nutrition.\n"
        "These points cover the basics.\n"
        "- Ignored after the end\n"
    )
    parser = SketchParser(max_points=8)
    events = feed_all(parser, [text])
    assert points(events) == ["Hydration", "Sleep", "Nutrition"]
    assert any(isinstance(e, OutlineEnded) for e in events)
    assert parser.ended


def test_numbered_list_skips_sub_bullets() -> None:
    events = feed_all(SketchParser(8), ["1. Alpha\n   - detail\n- also detail\n2. Beta\n"])
    assert points(events) == ["Alpha", "Beta"]


def test_cap_ends_the_outline() -> None:
    parser = SketchParser(max_points=3)
    events = feed_all(parser, ["".join(f"{i}. Point {i}\n" for i in range(1, 7))])
    assert points(events) == ["Point 1", "Point 2", "Point 3"]
    assert isinstance(events[-1], OutlineEnded)


@pytest.mark.parametrize("marker", ["DIRECT\n", "**DIRECT**\n", "Direct\n", "DIRECT: "])
def test_direct_marker_passes_the_answer_through_live(marker: str) -> None:
    parser = SketchParser(max_points=8)
    events = parser.feed(marker)
    events += parser.feed("12 * 7")
    assert parser.is_direct
    assert direct(events).strip() == "12 * 7"
    events += parser.feed(" = 84.")
    assert direct(events).strip() == "12 * 7 = 84."


def test_prose_without_marker_is_a_direct_answer() -> None:
    parser = SketchParser(max_points=8)
    events = feed_all(parser, ["Direct sunlight is ", "bright.\nSecond line."])
    assert parser.is_direct
    assert direct(events) == "Direct sunlight is bright.\nSecond line."


def test_empty_stream_has_no_points() -> None:
    parser = SketchParser(max_points=8)
    assert feed_all(parser, []) == []
    assert not parser.is_outline


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ("**Sleep well**", "Sleep well"),
        ("Sleep well: get eight hours", "Sleep well"),
        ("__Eat__ vegetables.", "Eat"),
        ("Use `async` code", "Use async code"),
    ],
)
def test_clean_title(raw: str, title: str) -> None:
    assert clean_title(raw) == title


def test_a_repeated_point_ends_the_outline() -> None:
    parser = SketchParser(max_points=8)
    events = feed_all(parser, ["1. Health\n2. Safety\n3. safety\n4. Safety\n5. Cost\n"])
    assert points(events) == ["Health", "Safety"]
    assert parser.ended


def test_a_cut_sketch_drops_its_half_written_last_point() -> None:
    text = "1. Fixed schedule\n2. Dark room\n3. Create a"
    parser = SketchParser(max_points=8)
    events = [e for piece in text for e in parser.feed(piece)]
    assert points(events + parser.close(cut=True)) == ["Fixed schedule", "Dark room"]
    # Not cut (the stream ended on its own): the last line is a whole point.
    parser = SketchParser(max_points=8)
    events = [e for piece in text for e in parser.feed(piece)]
    assert points(events + parser.close()) == ["Fixed schedule", "Dark room", "Create a"]
    # Cut before the first point line ended: the one point there is is kept.
    parser = SketchParser(max_points=8)
    events = parser.feed("1. Create a")
    assert points(events + parser.close(cut=True)) == ["Create a"]


FRAMED = "Sleep well with a few habits:\n1. Fixed schedule\n2. Dark room\nSmall habits add up.\n"


def frame_of(events: list[SketchEvent]) -> list[FrameText]:
    return [e for e in events if isinstance(e, FrameText)]


def opening(events: list[SketchEvent]) -> str:
    return "".join(e.text for e in frame_of(events) if not e.closing)


def test_a_framed_sketch_gives_its_opening_first_and_its_closing_after_the_points() -> None:
    parser = SketchParser(max_points=8, frame=True)
    events = feed_all(parser, list(FRAMED))
    first_point = events.index(PointFound(0, "Fixed schedule"))
    assert all(isinstance(e, FrameText) for e in events[:first_point])
    assert events[:first_point] == [FrameText("Sleep well with a few habits:", closing=False)]
    assert points(events) == ["Fixed schedule", "Dark room"]
    assert events[-2:] == [FrameText("Small habits add up.", closing=True), OutlineEnded()]
    assert parser.is_outline
    assert parser.ended
    assert direct(events) == ""


def test_without_frame_the_same_sketch_skips_the_preamble_and_ends_at_the_prose() -> None:
    events = feed_all(SketchParser(max_points=8), [FRAMED])
    assert frame_of(events) == []
    assert points(events) == ["Fixed schedule", "Dark room"]


def test_a_framed_outline_past_its_cap_skips_items_and_still_reads_the_closing() -> None:
    parser = SketchParser(max_points=2, frame=True)
    text = "Open:\n1. A\n2. B\n3. C\n   detail\nClose.\n"
    events = feed_all(parser, [text])
    assert points(events) == ["A", "B"]
    assert frame_of(events)[-1] == FrameText("Close.", closing=True)


def test_a_closing_cut_by_the_token_limit_is_dropped_a_whole_last_line_is_kept() -> None:
    cut = SketchParser(max_points=8, frame=True)
    events = cut.feed("Open:\n1. A\n2. B\nThe end of")
    events += cut.close(cut=True)
    assert [e.closing for e in frame_of(events)] == [False]
    assert cut.is_outline
    whole = SketchParser(max_points=8, frame=True)
    events = whole.feed("Open:\n1. A\nThe end.")
    events += whole.close()
    assert frame_of(events)[-1] == FrameText("The end.", closing=True)


def test_the_framed_prompt_asks_for_the_frame_and_only_an_outline_only_sketch_has_it() -> None:
    user = [ChatMessage(role="user", content="How to rest?")]
    framed = sketch_messages(user, allow_direct=False, frame=True)
    assert framed[0]["content"] == SKETCH_SYSTEM_FRAMED
    assert framed[2]["content"].endswith("longer, deeper sleep."), "the example closes"
    assert sketch_messages(user, allow_direct=False)[0]["content"] == SKETCH_SYSTEM_OUTLINE
    auto = sketch_messages(user, allow_direct=True, frame=True)
    assert auto == sketch_messages(user, allow_direct=True)


def test_a_framed_outline_that_lists_on_past_the_cap_ends_without_waiting_for_a_closing() -> None:
    parser = SketchParser(max_points=2, frame=True)
    events = parser.feed("Open:\n1. A\n2. B\n3. C\n4. D\n")
    assert not parser.ended, "two items past the cap may still be followed by a closing"
    events += parser.feed("5. E\n")
    assert parser.ended, "the third is a loop: the stream may be closed"
    assert events[-1] == OutlineEnded()
    assert points(events) == ["A", "B"]
    assert [e.closing for e in frame_of(events)] == [False]


def test_the_opening_is_given_as_soon_as_a_list_item_starts_after_it() -> None:
    parser = SketchParser(max_points=8, frame=True)
    assert parser.feed("Sleep well with habits:") == [], "it may still be the start of prose"
    assert parser.feed("\n") == []
    assert parser.feed("1") == []
    assert parser.feed(". Fi") == [FrameText("Sleep well with habits:", closing=False)]
    assert parser.feed("xed\n") == [PointFound(0, "Fixed")], "the opening is given once"
    bold = SketchParser(max_points=8, frame=True)
    assert opening(bold.feed("Open:\n\n**1.** A")) == "Open:"
    colon = SketchParser(max_points=8, frame=True)
    assert opening(colon.feed("Open:\n1: A")) == "Open:", "a '1:' item starts a list too"


def test_a_long_first_item_of_an_unopened_outline_is_not_prose() -> None:
    for start in ("1. ", "1: ", "- ", "**1.** "):
        parser = SketchParser(max_points=8, frame=True)
        parser.feed(start + " ".join(["word"] * 45))
        assert not parser.is_prose, start
        events = parser.feed("\n")
        assert points(events) == [" ".join(["word"] * 45)[:80].rsplit(" ", 1)[0]], start


@pytest.mark.parametrize(
    "pieces",
    [
        ["If it had never ", "been invented, we would read more."],  # one line, then the end
        ["Opening line.\n", "\n", "More prose on the next line"],  # prose after the line
        ["Open:\n", "\n", "A"],  # the next line starts with a letter: prose already
        [" ".join(["word"] * 41)],  # too long for an opening, no newline needed
    ],
)
def test_a_framed_sketch_that_is_prose_gives_nothing_and_ends(pieces: list[str]) -> None:
    parser = SketchParser(max_points=8, frame=True)
    events = [e for piece in pieces for e in parser.feed(piece)]
    assert events == [], "none of it is shown"
    assert parser.is_prose or not parser.ended
    events += parser.close()
    assert events == []
    assert parser.is_prose
    assert parser.ended
    assert not parser.is_outline
    assert not parser.is_direct


def test_prose_is_told_before_the_stream_ends_when_it_can_be() -> None:
    long = SketchParser(max_points=8, frame=True)
    long.feed(" ".join(["word"] * 40))
    assert not long.ended, "40 words may still be an opening"
    long.feed(" more")
    assert long.ended
    second = SketchParser(max_points=8, frame=True)
    second.feed("Opening line.\nM")
    assert second.is_prose, "the stream can be closed at the next line's first letter"


def test_a_framed_sketch_without_an_opening_or_with_the_marker_is_read_as_before() -> None:
    listed = SketchParser(max_points=8, frame=True)
    assert points(feed_all(listed, ["1. Alpha\n2. Beta\n"])) == ["Alpha", "Beta"]
    assert listed.is_outline
    marker = SketchParser(8, frame=True)
    assert direct(feed_all(marker, ["DIRECT\nx = 4"])) == "x = 4"
    assert marker.is_direct
    # Without the frame, a first line of prose is still taken as a direct answer.
    plain = SketchParser(max_points=8)
    assert direct(feed_all(plain, ["We would read more."])) == "We would read more."


SECTIONED = (
    "Renewable sources are replenished naturally:\n"
    "1. Solar, wind\n2. Geothermal\n"
    "**Non-renewable sources are finite:**\n"
    "1. Coal, oil\n2. Geothermal\n"
    "Both matter for the energy transition.\n"
)


def test_a_framed_sketch_with_a_second_list_reads_its_heading_as_a_section() -> None:
    parser = SketchParser(max_points=8, frame=True)
    events = feed_all(parser, [SECTIONED])
    found = [e for e in events if isinstance(e, PointFound)]
    heading = "**Non-renewable sources are finite:**"
    assert found == [
        PointFound(0, "Solar, wind"),
        PointFound(1, "Geothermal"),
        PointFound(2, "Coal, oil", heading),
        PointFound(3, "Geothermal", heading),
    ], "the same title under another heading is not a repeat"
    assert found[2].outline_title == "Non-renewable sources are finite: Coal, oil"
    assert found[0].outline_title == "Solar, wind"
    assert [e.text for e in frame_of(events) if e.closing] == [
        "Both matter for the energy transition."
    ]
    # Without the frame the heading still ends the outline (nothing of it would be shown).
    assert points(feed_all(SketchParser(max_points=8), [SECTIONED])) == [
        "Solar, wind",
        "Geothermal",
    ]


@pytest.mark.parametrize(
    "tail",
    [
        "Tourists prefer places that:\n",  # the stream stops at the heading
        "Tourists prefer places that:",  # ... without its newline
        "Tourists prefer places that:\nSo look at who eats there.\n",  # prose, not a list
    ],
)
def test_a_heading_with_no_list_after_it_is_never_shown_nor_taken_as_the_closing(
    tail: str,
) -> None:
    parser = SketchParser(max_points=8, frame=True)
    events = feed_all(parser, ["Locals prefer places that:\n1. Serve local food\n", tail])
    assert points(events) == ["Serve local food"]
    closings = [e.text for e in frame_of(events) if e.closing]
    assert closings == (["So look at who eats there."] if "So look" in tail else [])
    assert parser.is_outline


def test_a_markdown_heading_opens_a_section_too() -> None:
    parser = SketchParser(max_points=8, frame=True)
    events = feed_all(parser, ["Open:\n1. A\n### Drawbacks\n1. B\nClose.\n"])
    found = [e for e in events if isinstance(e, PointFound)]
    assert found == [PointFound(0, "A"), PointFound(1, "B", "### Drawbacks")]
    assert found[1].outline_title == "Drawbacks: B"
    assert frame_of(events)[-1] == FrameText("Close.", closing=True)


def test_a_heading_past_the_point_cap_is_skipped_like_an_item() -> None:
    parser = SketchParser(max_points=2, frame=True)
    events = feed_all(parser, ["Open:\n1. A\n2. B\nMore:\n1. C\nClose.\n"])
    assert points(events) == ["A", "B"]
    assert frame_of(events)[-1] == FrameText("Close.", closing=True)
    looping = SketchParser(max_points=2, frame=True)
    looping.feed("Open:\n1. A\n2. B\nMore:\n1. C\nEven more:\n")
    assert looping.ended, "the third thing past the cap is a loop"


def test_a_section_heading_keeps_a_hash_inside_it() -> None:
    found = [
        e
        for e in feed_all(SketchParser(max_points=8, frame=True), ["Open:\n1. A\nIn C#:\n1. B\n"])
        if isinstance(e, PointFound)
    ]
    assert found[1].outline_title == "In C#: B"
