"""Judge calibration against scripted judges with known biases."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from pice_bench.calibration import (
    PADDING,
    Calibration,
    calibrate,
    calibration_pairs,
    judgment_diagnostics,
    order_stats,
    padded,
)
from pice_bench.calibration_pairs import CLEAR, HELDOUT
from pice_bench.records import JudgeRecord, Mode
from pice_bench.report import render_markdown
from pice_bench.results import BenchResults
from pice_bench.winrate import Judgment, Verdict

BETTER = {better for _, better, _, _ in [*CLEAR, *HELDOUT]}


def fair(_q: str, a: str, b: str) -> Judgment:
    """Knows the better answers; marks padding down a little; no position preference."""

    def grade(x: str) -> int:
        return (8 if x in BETTER else 5) - (1 if PADDING.strip() in x else 0)

    return Judgment.parse(f"Score A: {grade(a)}\nScore B: {grade(b)}")


def first_wins(_q: str, _a: str, _b: str) -> Judgment:
    return Judgment.parse("Score A: 8\nScore B: 6")


def longest_wins(_q: str, a: str, b: str) -> Judgment:
    return Judgment.parse(
        f"Score A: {9 if len(a) > len(b) else 4}\nScore B: {9 if len(b) > len(a) else 4}"
    )


async def run(judge: object) -> Calibration:
    async def call(q: str, a: str, b: str) -> Judgment:
        return judge(q, a, b)  # type: ignore[operator,no-any-return]

    return await calibrate(call)


def test_the_pairs_cover_known_better_padded_and_reasonable() -> None:
    sets = [s for s, *_ in calibration_pairs()]
    assert sets.count("known-better") == 10
    assert sets.count("padded") == 13
    assert padded("Yes.").startswith("Yes.\n\n")
    assert len(padded("Yes.")) > 200


async def test_a_fair_judge_is_accurate_and_unbiased() -> None:
    cal = await run(fair)
    assert (cal.accuracy, cal.single_order_accuracy) == (1.0, 1.0)
    assert (cal.padded_wins, cal.original_wins, cal.length_bias) == (0, 13, 0.0)
    assert cal.orders.position_following == 0.0
    assert cal.orders.position_bonus == 0.0


async def test_a_judge_that_prefers_the_first_position_is_caught() -> None:
    cal = await run(first_wins)
    assert cal.orders.position_following == 1.0
    assert cal.orders.order_agreement == 0.0
    assert cal.orders.position_bonus == pytest.approx(2.0)
    assert cal.accuracy == 0.0  # the bonus cancels over both orders: every pair ties
    assert cal.single_order_accuracy == 0.5
    assert cal.orders.grades == {6: 52, 8: 52}  # 26 pairs, 2 orders, 2 grades each
    assert cal.orders.commonest_grade_share == 0.5


async def test_a_judge_that_prefers_length_is_caught() -> None:
    cal = await run(longest_wins)
    assert cal.length_bias == 1.0
    assert cal.original_wins == 0


def test_order_stats_of_nothing_are_nan() -> None:
    assert math.isnan(order_stats([]).position_following)


def test_the_runs_own_judgments_give_order_statistics_and_a_report() -> None:
    def rec(first: tuple[int, int], second: tuple[int, int]) -> JudgeRecord:
        v = [
            Judgment.parse(f"Score A: {a}\nScore B: {b}").verdict.value for a, b in (first, second)
        ]
        return JudgeRecord("q", "generic", True, Mode.PICE, Mode.CLOUD, v[0], v[1], "tie", "", "",
                           first, second)  # fmt: skip

    results = BenchResults(config={"judge_model": "qwen", "judge_is_cloud": True})
    results.judgments += [rec((8, 8), (8, 8)), rec((8, 6), (8, 6)), rec((7, 8), (8, 7))]
    # A pair of identical answers the judge never saw does not count.
    results.judgments.append(replace(rec((9, 1), (9, 1)), identical=True))
    stats = results.judge_diagnostics(Mode.PICE)
    assert stats.pairs == 3
    assert stats.position_following == pytest.approx(1 / 3)
    assert stats.order_agreement == pytest.approx(2 / 3)  # a tie twice, or B then A
    assert stats.grades == {6: 2, 7: 2, 8: 8}
    assert judgment_diagnostics([]).pairs == 0
    md = render_markdown(results)
    assert "the cloud model itself, grading its own answers" in md
    assert "| commonest grade | 67 % (grade 8) |" in md
    assert results.to_json()["judge_diagnostics"]["pice-progressive"]["pairs"] == 3
    assert Verdict.TIE.value == "tie"
