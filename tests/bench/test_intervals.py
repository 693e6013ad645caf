"""Bootstrap intervals on net win rates and paired latency ratios, from hand-built records."""

from __future__ import annotations

import pytest

from pice_bench.records import Answer, JudgeRecord, Mode, Phase, RequestRecord
from pice_bench.report import render_markdown
from pice_bench.results import BenchResults


def judged(qid: str, outcome: str) -> JudgeRecord:
    return JudgeRecord(qid, "generic", True, Mode.PICE, Mode.CLOUD, "A", "B", outcome, "", "")


def timed(mode: Mode, qid: str, latency: float) -> RequestRecord:
    answer = Answer(text="x", latency_s=latency, finish_reason="stop")
    return RequestRecord(mode, Phase.LATENCY, qid, "generic", True, answer)


def test_the_win_rate_interval_contains_the_rate_and_shrinks_with_questions() -> None:
    def interval(n: int) -> tuple[float, float]:
        results = BenchResults(config={"seed": 0})
        outcomes = ["win", "loss", "tie", "tie"] * n
        results.judgments += [judged(f"q{i}", o) for i, o in enumerate(outcomes)]
        assert results.win_rates(Mode.PICE)["suitable"].net == 0.0
        return results.win_rate_intervals(Mode.PICE)["suitable"]

    low, high = interval(3)
    assert low < 0.0 < high
    low40, high40 = interval(12)
    assert low40 < 0.0 < high40
    assert high40 - low40 < high - low


def test_all_wins_give_a_degenerate_interval() -> None:
    results = BenchResults(config={})
    results.judgments += [judged(f"q{i}", "win") for i in range(10)]
    assert results.win_rate_intervals(Mode.PICE)["all"] == (1.0, 1.0)


def test_latency_ratio_is_paired_by_question() -> None:
    results = BenchResults(config={})
    for i in range(20):
        results.requests += [
            timed(Mode.CLOUD, f"q{i}", 10.0 + i),
            timed(Mode.PICE, f"q{i}", 5.0 + i / 2),
        ]
    results.requests.append(timed(Mode.PICE, "only-pice", 1.0))  # no cloud-only pair: left out
    ratio, low, high = results.latency_ratio(Mode.PICE, suits_only=True)
    assert ratio == pytest.approx(0.5)
    assert (low, high) == pytest.approx((0.5, 0.5))  # every pair is exactly 1:2
    md = render_markdown(results)
    assert "0.50 [0.50, 0.50]" in md


def test_latency_ratio_interval_is_wide_when_pairs_disagree() -> None:
    results = BenchResults(config={})
    for i, (cloud, pice) in enumerate([(10, 4), (10, 12), (20, 6), (8, 9), (30, 10), (12, 5)]):
        results.requests += [timed(Mode.CLOUD, f"q{i}", cloud), timed(Mode.PICE, f"q{i}", pice)]
    ratio, low, high = results.latency_ratio(Mode.PICE, suits_only=False)
    assert low < ratio < high
    assert high - low > 0.2
    data = results.to_json()["summary"]["latency_ratio_p50"]["all"]["pice-progressive"]
    assert data == {"ratio": ratio, "ci95_low": low, "ci95_high": high}
