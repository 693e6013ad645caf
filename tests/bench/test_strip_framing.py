"""``benchmarks/strip_framing.py``: an answer cut down to its numbered list, nothing else."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def strip_framing() -> ModuleType:
    return load_benchmark("strip_framing")


FRAMED = (
    "Here are some ways to sleep better:\n\n"
    "1. **Schedule**: Go to bed at the same time.\n\n"
    "2. **Caffeine**: Avoid it after noon.\n"
    "   It stays in the blood for hours.\n\n"
    "   - Tea counts too.\n\n"
    "By following these tips, you will sleep better."
)


def test_the_opening_and_closing_prose_go_and_the_items_stay_whole(
    strip_framing: ModuleType,
) -> None:
    cut = strip_framing.list_only(FRAMED)
    assert cut.startswith("1. **Schedule**")
    assert "It stays in the blood for hours." in cut, "the item's own next line"
    assert cut.endswith("- Tea counts too."), "a nested bullet after a blank line"
    assert "Here are" not in cut
    assert "By following" not in cut


def test_an_answer_without_a_numbered_item_is_not_cut(strip_framing: ModuleType) -> None:
    assert strip_framing.list_only("Dear Sir,\n\nThank you.") is None
    assert strip_framing.list_only("1. **Only**: a list.") == "1. **Only**: a list."


def test_only_the_named_modes_answers_change(strip_framing: ModuleType) -> None:
    def record(mode: str, text: str) -> dict[str, Any]:
        return {"mode": mode, "phase": "latency", "answer": {"text": text}}

    results = {"requests": [record("cloud-only", FRAMED), record("pice", FRAMED)]}
    out, counts = strip_framing.strip(results, "cloud-only")
    assert out["requests"][0]["answer"]["text"] != FRAMED
    assert out["requests"][1]["answer"]["text"] == FRAMED
    assert results["requests"][0]["answer"]["text"] == FRAMED, "the input is not modified"
    assert counts["cut"] == 1
    assert counts["words_after"] < counts["words_before"]
    assert out["config"]["framing_stripped"]["mode"] == "cloud-only"
