from __future__ import annotations

import pytest

from pice_bench.winrate import (
    Judgment,
    Outcome,
    Verdict,
    WinRate,
    combine,
    combined_margin,
    parse_scores,
    parse_verdict,
    win_rates_by,
)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("[[A]]", Verdict.A),
        ("After comparing both, my verdict is [[B]].", Verdict.B),
        ("[[C]]", Verdict.TIE),
        ("A", Verdict.A),
        ("B. Assistant B is more detailed.", Verdict.B),
        ("Tie - both are equally good", Verdict.TIE),
        ("Answer A is better", Verdict.A),
        ("I cannot decide.", Verdict.INVALID),
        ("", Verdict.INVALID),
        ("Both answers are fine", Verdict.INVALID),
        ("A: 7", Verdict.INVALID),  # half a grade reply is not a verdict for A
    ],
)
def test_parse_verdict(reply: str, verdict: Verdict) -> None:
    assert parse_verdict(reply) is verdict


@pytest.mark.parametrize(
    ("reply", "scores"),
    [
        ("Score A: 8\nScore B: 3", (8, 3)),
        ("**Score A:** 7/10\n**Score B:** 9/10", (7, 9)),
        ("Score for Assistant A: 6, Score for Assistant B: 6", (6, 6)),
        ("A: 10\nB: 1", (10, 1)),
        ("Answer B - 4\nAnswer A - 5", (5, 4)),
        ("Score A: 8\nScore B: 3\nScore A: 2", (8, 3)),  # the first grade counts
        ("Score A: 8", None),  # cut off before B
        ("Score A: 11\nScore B: 3", None),  # off the scale
        ("Score A: 0\nScore B: 3", None),
        ("Score A: 7.5\nScore B: 6", None),  # grades are whole numbers
        ("[[A]]", None),
        ("", None),
    ],
)
def test_parse_scores(reply: str, scores: tuple[int, int] | None) -> None:
    assert parse_scores(reply) == scores


@pytest.mark.parametrize(
    ("reply", "judgment"),
    [
        ("Score A: 8\nScore B: 3", Judgment(Verdict.A, (8, 3))),
        ("Score A: 2\nScore B: 3", Judgment(Verdict.B, (2, 3))),
        ("Score A: 5\nScore B: 5", Judgment(Verdict.TIE, (5, 5))),
        ("Score A: 8\n[[B]]", Judgment(Verdict.B)),  # no grade for B: the verdict is read
        ("[[C]]", Judgment(Verdict.TIE)),
        ("Score A: 8", Judgment(Verdict.INVALID)),
        ("I cannot decide.", Judgment(Verdict.INVALID)),
    ],
)
def test_judgment_reads_grades_else_the_verdict(reply: str, judgment: Judgment) -> None:
    assert Judgment.parse(reply) == judgment


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        (Verdict.A, Verdict.B, Outcome.WIN),  # candidate preferred in both orders
        (Verdict.B, Verdict.A, Outcome.LOSS),  # baseline preferred in both orders
        (Verdict.A, Verdict.A, Outcome.TIE),  # position bias: always "A" -> disagreement
        (Verdict.A, Verdict.TIE, Outcome.WIN),
        (Verdict.TIE, Verdict.A, Outcome.LOSS),
        (Verdict.INVALID, Verdict.INVALID, Outcome.TIE),
    ],
)
def test_combine_verdicts_both_orders(first: Verdict, second: Verdict, outcome: Outcome) -> None:
    assert combine(Judgment(first), Judgment(second)) is outcome


@pytest.mark.parametrize(
    ("first", "second", "margin", "outcome"),
    [
        ((8, 3), (3, 8), 10, Outcome.WIN),  # candidate graded higher in both orders
        ((3, 8), (8, 3), -10, Outcome.LOSS),
        # A judge that always grades A two points higher: the bonus cancels.
        ((7, 5), (7, 5), 0, Outcome.TIE),
        # The same bonus on top of a real three-point lead: the lead survives the swap.
        ((8, 3), (4, 7), 8, Outcome.WIN),
        ((6, 6), (6, 8), 2, Outcome.WIN),  # preferred in one order only, level in the other
        # A bonus larger than the lead flips one order; the sum keeps the sign of the lead.
        ((9, 5), (6, 5), 3, Outcome.WIN),
    ],
)
def test_combine_grades_cancels_position_bias(
    first: tuple[int, int], second: tuple[int, int], margin: int, outcome: Outcome
) -> None:
    a = Judgment.parse("Score A: {}\nScore B: {}".format(*first))
    b = Judgment.parse("Score A: {}\nScore B: {}".format(*second))
    assert combined_margin(a, b) == margin
    assert combine(a, b) is outcome


def test_invalid_order_counts_as_a_tie_in_that_order() -> None:
    graded = Judgment.parse("Score A: 7\nScore B: 4")
    invalid = Judgment.parse("no idea")
    assert combined_margin(graded, invalid) == 3
    assert combined_margin(invalid, graded) == -3
    # A verdict without grades weighs one point against a graded order.
    assert combined_margin(graded, Judgment(Verdict.B)) == 4
    assert combined_margin(Judgment(Verdict.B), Judgment.parse("Score A: 5\nScore B: 6")) == 0


def test_net_win_rate_arithmetic() -> None:
    rate = WinRate.of([Outcome.WIN, Outcome.WIN, Outcome.LOSS, Outcome.TIE, Outcome.TIE])
    assert (rate.wins, rate.losses, rate.ties, rate.n) == (2, 1, 2, 5)
    assert rate.net == pytest.approx(0.2)
    assert WinRate.of([]).net == 0.0


def test_win_rates_by_category() -> None:
    rates = win_rates_by(
        [
            ("math", Outcome.LOSS),
            ("generic", Outcome.WIN),
            ("generic", Outcome.TIE),
            ("math", Outcome.LOSS),
        ]
    )
    assert list(rates) == ["generic", "math", "all"]
    assert rates["generic"].net == pytest.approx(0.5)
    assert rates["math"].net == pytest.approx(-1.0)
    assert rates["all"].net == pytest.approx(-0.25)
