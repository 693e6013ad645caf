"""The cloud's own expansion of a point: its restated title is dropped, however it is split."""

from __future__ import annotations

import pytest

from pice_gateway.progressive.expand_prompt import EchoStripper


def stripped(index: int, title: str, reply: str, piece: int = 3) -> str:
    echo = EchoStripper(index, title)
    out = [echo.feed(reply[i : i + piece]) for i in range(0, len(reply), piece)]
    return "".join(out) + echo.flush()


@pytest.mark.parametrize(
    "reply",
    [
        "2. **Coal and oil**: They are burnt for energy.",
        "**Coal and oil**: They are burnt for energy.",
        "Coal and oil - They are burnt for energy.",
        "They are burnt for energy.",
    ],
)
def test_a_restated_title_is_dropped_and_the_body_kept(reply: str) -> None:
    assert stripped(1, "Coal and oil", reply) == "They are burnt for energy."


@pytest.mark.parametrize(
    "reply",
    [
        "5. **Non-renewable sources: Coal and oil**: They are burnt for energy.",
        "5. **Coal and oil**: They are burnt for energy.",  # the bare title of a section's point
        "They are burnt for energy.",
    ],
)
def test_a_sectioned_points_echo_is_dropped_with_or_without_its_heading(reply: str) -> None:
    title = "Non-renewable sources: Coal and oil"
    assert stripped(4, title, reply) == "They are burnt for energy."


def test_text_that_only_mentions_the_title_later_is_untouched() -> None:
    reply = "Burning coal and oil releases carbon dioxide."
    assert stripped(1, "Coal and oil", reply) == reply
