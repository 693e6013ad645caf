"""Aggregation, sustained-rate and table rendering over hand-built records."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from pice_bench.records import Answer, JudgeRecord, Mode, Phase, RequestRecord, Tokens
from pice_bench.report import render_markdown, table
from pice_bench.results import BenchResults, nan_to_none
from pice_bench.throughput import LoadStep, max_sustained_rate


def rec(
    mode: Mode,
    latency: float,
    *,
    category: str = "generic",
    suits: bool = True,
    phase: Phase = Phase.LATENCY,
    error: str | None = None,
    started: float | None = None,
    rate: float | None = None,
) -> RequestRecord:
    return RequestRecord(
        mode=mode,
        phase=phase,
        question_id=f"{category}-{latency}",
        category=category,
        suits_points=suits,
        answer=Answer(
            text="1. **Exercise**: walk thirty minutes daily. 2. **Sleep**: Sleep, sleep well.",
            latency_s=latency,
            ttft_s=latency / 4,
            tokens=Tokens(cloud_completion=100 if mode is Mode.CLOUD else 20, edge_completion=80),
            points=["Exercise", "Sleep"] if mode is Mode.PICE else [],
            error=error,
        ),
        rate=rate,
        started_s=started,
    )


def step(mode: Mode, rate: float, p95: float, errors: int = 0) -> LoadStep:
    return LoadStep(mode, rate, sent=10, completed=10 - errors, errors=errors, p50_s=p95 / 2,
                    p95_s=p95, achieved_rps=rate)  # fmt: skip


def test_load_step_from_records() -> None:
    records = [
        rec(Mode.PICE, 2.0, phase=Phase.LOAD, started=0.0, rate=1.0),
        rec(Mode.PICE, 3.0, phase=Phase.LOAD, started=1.0, rate=1.0),
        rec(Mode.PICE, 9.0, phase=Phase.LOAD, started=2.0, rate=1.0, error="503"),
    ]
    s = LoadStep.of(Mode.PICE, 1.0, records)
    assert (s.sent, s.completed, s.errors) == (3, 2, 1)
    assert s.p50_s == pytest.approx(2.5)
    assert s.achieved_rps == pytest.approx(2 / 4.0)  # last completion at 1.0 + 3.0
    assert not s.sustained(slo_s=100.0)  # an error fails the step whatever the latency
    assert (s.hedges, s.hedges_won) == (0, 0)  # no ``pice`` object: nothing hedged


def test_load_step_counts_the_gateways_hedges() -> None:
    """The hedges come from the answers' ``pice`` objects, so a run's record shows whether
    hedging acted; a failed request's are not counted (its latency is not either)."""

    def hedged(latency: float, hedges: int, won: int, error: str | None = None) -> RequestRecord:
        record = rec(Mode.PICE, latency, phase=Phase.LOAD, started=0.0, rate=1.0, error=error)
        answer = dataclasses.replace(
            record.answer, extension={"mode": "progressive", "hedges": hedges, "hedges_won": won}
        )
        return dataclasses.replace(record, answer=answer)

    records = [hedged(2.0, 2, 1), hedged(3.0, 1, 0), hedged(4.0, 5, 5, error="503")]
    records.append(rec(Mode.PICE, 5.0, phase=Phase.LOAD, started=0.0, rate=1.0))
    s = LoadStep.of(Mode.PICE, 1.0, records)
    assert (s.hedges, s.hedges_won) == (3, 1)


def test_max_sustained_rate_stops_at_first_failure() -> None:
    steps = [step(Mode.CLOUD, 0.4, 30.0), step(Mode.CLOUD, 0.1, 5.0), step(Mode.CLOUD, 0.2, 8.0),
             step(Mode.CLOUD, 0.8, 9.0)]  # fmt: skip
    assert max_sustained_rate(steps, slo_s=10.0) == 0.2  # 0.8 passing after 0.4 failed is noise
    assert max_sustained_rate(steps, slo_s=1.0) is None
    assert max_sustained_rate([step(Mode.CLOUD, 0.1, 1.0, errors=1)], slo_s=10.0) is None


def make_results() -> BenchResults:
    results = BenchResults(config={"slo_seconds": 10.0, "cloud": "llama"})
    for lat in (10.0, 12.0, 14.0):
        results.requests.append(rec(Mode.CLOUD, lat))
        results.requests.append(rec(Mode.PICE, lat / 2))
    results.requests.append(rec(Mode.CLOUD, 1.0, category="math", suits=False))
    results.requests.append(rec(Mode.PICE, 3.0, category="math", suits=False))
    results.requests.append(rec(Mode.PICE, 99.0, error="boom"))
    results.load_steps += [step(Mode.CLOUD, 0.1, 8.0), step(Mode.CLOUD, 0.2, 20.0),
                           step(Mode.PICE, 0.1, 4.0), step(Mode.PICE, 0.2, 6.0)]  # fmt: skip
    for cat, suits, outcome in (("generic", True, "win"), ("generic", True, "tie"),
                                ("math", False, "loss")):  # fmt: skip
        results.judgments.append(
            JudgeRecord(cat, cat, suits, Mode.PICE, Mode.CLOUD, "A", "B", outcome, "[[A]]", "[[B]]")
        )
    return results


def test_aggregates() -> None:
    results = make_results()
    rows = {r.mode: r for r in results.latency_by_mode(suits_only=True)}
    assert rows[Mode.CLOUD].latency.p50 == 12.0
    assert rows[Mode.PICE].latency.p50 == 6.0
    assert rows[Mode.PICE].errors == 1  # the failed request is counted, not timed
    assert results.p50_reduction(Mode.PICE) == pytest.approx(0.5)
    assert results.max_sustained(10.0) == {Mode.CLOUD: 0.1, Mode.PICE: 0.2}
    assert results.throughput_ratio(Mode.PICE, 10.0) == pytest.approx(2.0)
    rates = results.win_rates(Mode.PICE)
    assert rates["generic"].net == pytest.approx(0.5)
    assert rates["suitable"].net == pytest.approx(0.5)
    assert rates["other"].net == pytest.approx(-1.0)
    assert results.latency_by_category()["math"][Mode.PICE].p50 == 3.0
    [cloud_cov, pice_cov] = results.coverage()
    # Every PICE answer expands "Exercise" and only restates "Sleep".
    assert (pice_cov.answers_with_points, pice_cov.all_points_covered) == (4, 0)
    assert (pice_cov.points, pice_cov.points_covered, pice_cov.points_share) == (8, 4, 0.5)
    assert {(f.index, f.title, f.why) for f in pice_cov.failures} == {
        (1, "Sleep", "restates-title")
    }
    assert cloud_cov.answers_with_points == 0
    # A mode that ran only under load has no answers to check, and no row.
    results.requests.append(rec(Mode.PICE_AUTO, 4.0, phase=Phase.LOAD, started=0.0, rate=0.1))
    assert Mode.PICE_AUTO in results.modes()
    assert [c.mode for c in results.coverage()] == [Mode.CLOUD, Mode.PICE]


def test_table_rendering() -> None:
    assert (
        table(["a", "b"], [["1", "2"], ["3", "4"]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"
    )


def test_markdown_report_states_the_targets() -> None:
    md = render_markdown(make_results())
    assert "| pice-progressive | 4 | 1 | 6.00 |" in md  # mode, n, errors, p50
    assert "| PICE p50 ≥ 40% below cloud-only (suitable) | -50 % | met |" in md
    assert "2.00× | met |" in md
    assert "| suitable | 2 | 1 | 0 | 1 | +0.50 |" in md
    assert "SLO p95 ≤ 10 s" in md
    assert "| 4 | 0 | 4/8 (50 %) |" in md  # answers with a sketch, all expanded, points
    assert 'point 2 "Sleep": restates-title' in md
    assert "Judge calls that failed after their retries: pice-progressive 0." in md


def test_judge_calls_that_failed_are_counted_and_flagged() -> None:
    results = make_results()
    failed = "judge call failed: ConnectError: refused"
    verdicts = ("invalid", "invalid", "tie", failed, failed)
    results.judgments.append(JudgeRecord("g", "generic", True, Mode.PICE, Mode.CLOUD, *verdicts))
    assert results.judge_failures(Mode.PICE) == 2
    assert nan_to_none(results.to_json())["judge_failed_calls"] == {"pice-progressive": 2}
    md = render_markdown(results)
    assert "failed after their retries: pice-progressive 2 (counted as ties: judge again)" in md


def test_json_has_raw_measurements_and_no_nan(tmp_path: Path) -> None:
    results = make_results()
    results.requests.append(rec(Mode.SOT, 1.0, error="down"))  # a mode with only failures: NaN
    data = nan_to_none(results.to_json())
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert len(back["requests"]) == len(results.requests)
    assert back["summary"]["max_sustained_rate"] == {"cloud-only": 0.1, "pice-progressive": 0.2}
    sot = next(r for r in back["summary"]["latency_all"] if r["mode"] == "sot-cloud")
    assert sot["latency"]["p50"] is None
    assert not math.isnan(back["summary"]["latency_all"][0]["latency"]["p50"])


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pice_bench.plots import write_plots

    files = write_plots(make_results(), tmp_path)
    assert sorted(p.name for p in files) == [
        "latency_by_category.png", "latency_vs_rate.png", "throughput.png",
        "win_rate_pice-progressive.png",
    ]  # fmt: skip
    for path in files:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000
