"""Truncation accounting: which answers the budget cut, per mode and per judged pair."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pice_bench.judge import Judge
from pice_bench.questions import Question
from pice_bench.records import Answer, JudgeRecord, Mode, Phase, RequestRecord
from pice_bench.results import NEITHER_CUT, BenchResults, mode_latency


def test_an_answer_is_cut_when_its_stream_or_any_point_ended_on_length() -> None:
    assert Answer(finish_reason="length").cut_off
    assert not Answer(finish_reason="stop").cut_off
    points = [{"title": "a", "finish_reason": "stop"}, {"title": "b", "finish_reason": "length"}]
    assert Answer(finish_reason="stop", extension={"points": points}).cut_off
    assert not Answer(finish_reason="stop", extension={"points": points[:1]}).cut_off
    assert not Answer(extension={"points": ["not a dict"]}).cut_off


def record(mode: Mode, finish: str, qid: str = "q") -> RequestRecord:
    answer = Answer(text="x", latency_s=1.0, finish_reason=finish)
    return RequestRecord(mode, Phase.LATENCY, qid, "generic", True, answer)


def test_mode_latency_counts_the_cut_off_share() -> None:
    row = mode_latency(Mode.CLOUD, [record(Mode.CLOUD, f) for f in ("length", "stop", "stop")])
    assert row.cut_off == 1
    assert row.cut_off_share == pytest.approx(1 / 3)
    data = BenchResults(config={}, requests=[record(Mode.CLOUD, "length")]).to_json()
    assert data["summary"]["latency_all"][0]["cut_off_share"] == 1.0


def judged(outcome: str, *, cut: bool) -> JudgeRecord:
    return JudgeRecord("q", "generic", True, Mode.PICE, Mode.CLOUD, "A", "B", outcome, "", "",
                       baseline_cut=cut)  # fmt: skip


def test_win_rates_also_over_pairs_that_neither_budget_cut() -> None:
    results = BenchResults(config={})
    results.judgments += [judged("win", cut=True), judged("loss", cut=False)]
    rates = results.win_rates(Mode.PICE)
    assert rates["suitable"].n == 2
    assert (rates[NEITHER_CUT].n, rates[NEITHER_CUT].losses) == (1, 1)


async def test_the_judge_is_told_nothing_about_modes() -> None:
    bodies: list[dict[str, Any]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        reply = {"choices": [{"message": {"content": "Score A: 5\nScore B: 5"}}]}
        return httpx.Response(200, json=reply)

    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as client:
        judge = Judge(client, "http://judge/v1", "m")
        q = Question("q", "generic", "Why?", True)
        await judge.judge_pair(q, Mode.PICE, "one answer", Mode.CLOUD, "another answer")
    text = json.dumps(bodies).lower()
    # (The rubric itself names "cut off mid-sentence" as a flaw; the judge reads the text.)
    for word in ("pice", "cloud", "sot", "edge", "progressive", "truncat", "budget"):
        assert word not in text
