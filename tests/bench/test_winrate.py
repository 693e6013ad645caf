from __future__ import annotations

import pytest

from pice.bench.winrate import Outcome, Verdict, WinRate, combine, parse_verdict, win_rates_by


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
    ],
)
def test_parse_verdict(reply: str, verdict: Verdict) -> None:
    assert parse_verdict(reply) is verdict


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
def test_combine_both_orders(first: Verdict, second: Verdict, outcome: Outcome) -> None:
    assert combine(first, second) is outcome


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
