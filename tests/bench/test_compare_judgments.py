"""``benchmarks/compare_judgments.py``: two judgments of a pair compared question by question."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def compare_judgments() -> ModuleType:
    return load_benchmark("compare_judgments")


def judged(*rows: tuple[str, str, float]) -> dict[str, dict[str, Any]]:
    return {q: {"question_id": q, "outcome": o, "margin": m} for q, o, m in rows}


def test_the_shift_is_paired_by_question_and_only_common_questions_count(
    compare_judgments: ModuleType,
) -> None:
    before = judged(("a", "loss", -1.0), ("b", "tie", 0.0), ("c", "loss", -0.8), ("x", "win", 2))
    after = judged(("a", "tie", -0.2), ("b", "win", 0.9), ("c", "loss", -0.9))
    result = compare_judgments.compare(before, after)
    assert result["n"] == 3
    assert result["margin_shift_mean"] == pytest.approx((0.8 + 0.9 - 0.1) / 3)
    assert (result["margins_up"], result["margins_down"]) == (2, 1)
    assert result["net_before"] == pytest.approx(-2 / 3)
    assert result["net_after"] == pytest.approx(0.0)
    assert result["outcomes"] == {"loss->loss": 1, "loss->tie": 1, "tie->win": 1}
    low, high = result["margin_shift_ci95"]
    assert low <= result["margin_shift_mean"] <= high
