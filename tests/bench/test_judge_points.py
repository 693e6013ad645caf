"""``benchmarks/judge_points.py``: which points of two runs are judged, and the summary."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def judge_points() -> ModuleType:
    return load_benchmark("judge_points")


def answer(titles: list[str], bodies: list[str], winners: list[int | None]) -> dict[str, Any]:
    text = "Intro:\n\n" + "\n".join(
        f"{n}. **{t}**: {b}" for n, (t, b) in enumerate(zip(titles, bodies, strict=True), 1)
    )
    points = [{"title": t, "winner": w} for t, w in zip(titles, winners, strict=True)]
    return {"category": "generic", "answer": {"text": text, "points": titles,
            "extension": {"points": points}}}  # fmt: skip


def test_only_points_that_differ_under_the_same_outline_are_paired(
    judge_points: ModuleType,
) -> None:
    a = {
        "q1": answer(["Sleep", "Walk"], ["Sleep eight hours.", "Walk daily."], [None, None]),
        "q2": answer(["Eat"], ["Eat greens."], [None]),
        "q3": answer(["Read"], ["Read books."], [None]),
    }
    b = {
        "q1": answer(["Sleep", "Walk"], ["Sleep eight hours.", "Walk every day."], [None, 2]),
        "q2": answer(["Drink"], ["Drink water."], [None]),  # another outline: left out
    }
    pairs, counts = judge_points.point_pairs(a, b, {"q1": "How to stay healthy?"})
    assert counts == {"questions": 2, "outline_differs": 1, "points": 2, "identical": 1}
    [pair] = pairs
    assert (pair.question_id, pair.index, pair.title) == ("q1", 1, "Walk")
    assert (pair.body_a, pair.body_b, pair.winner_b) == ("Walk daily.", "Walk every day.", 2)
    asked = pair.as_question()
    assert asked.id == "q1#2"
    assert asked.question.startswith("How to stay healthy?")
    assert '"Walk"' in asked.question


def test_the_summary_resamples_questions(judge_points: ModuleType) -> None:
    records = [
        {"question_id": "q1", "outcome": "win", "margin": 1.0},
        {"question_id": "q1", "outcome": "win", "margin": 0.6},
        {"question_id": "q2", "outcome": "loss", "margin": -1.0},
        {"question_id": "q2", "outcome": "tie", "margin": 0.0},
    ]
    s = judge_points.summary(records)
    assert (s["points"], s["questions"], s["wins"], s["losses"], s["ties"]) == (4, 2, 2, 1, 1)
    assert s["net"] == pytest.approx(0.25)
    assert s["mean_margin"] == pytest.approx(0.15)
    # Two questions: the resamples are q1 twice (+1), q2 twice (-0.5) or both (+0.25).
    assert s["net_ci95"] == [-0.5, 1.0]
    assert judge_points.summary([]) == {"points": 0}
