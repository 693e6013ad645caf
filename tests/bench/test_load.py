"""The open-loop load runner, driven by a stand-in answer function (no servers)."""

from __future__ import annotations

import asyncio

import pytest

from pice_bench.load import run_load_step
from pice_bench.questions import Question
from pice_bench.records import Answer, Mode

QUESTIONS = [Question(f"q{i}", "generic", f"question {i}", True) for i in range(3)]


async def test_arrivals_do_not_wait_for_answers() -> None:
    """Open loop: the n-th request goes out at its scheduled time even while others run."""
    in_flight = 0
    peak = 0

    async def slow(question: Question) -> Answer:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.3)
        in_flight -= 1
        return Answer(text=question.question, latency_s=0.3)

    step, records = await run_load_step(
        Mode.CLOUD, slow, QUESTIONS, rate=50.0, max_count=8, max_duration=10.0,
        deadline_s=10.0, seed=1,
    )  # fmt: skip
    assert (step.sent, step.completed, step.errors) == (8, 8, 0)
    assert peak >= 4  # ~50 req/s against 0.3 s answers: a closed loop would peak at 1
    assert [r.question_id for r in records[:4]] == ["q0", "q1", "q2", "q0"]  # round-robin
    for r in records:
        assert r.started_s is not None
        assert r.scheduled_s is not None
        assert r.started_s == pytest.approx(r.scheduled_s, abs=0.05)


async def test_requests_past_the_deadline_are_cancelled_and_counted() -> None:
    cancelled = 0

    async def hang(question: Question) -> Answer:
        nonlocal cancelled
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return Answer()

    step, records = await run_load_step(
        Mode.PICE, hang, QUESTIONS, rate=100.0, max_count=2, max_duration=1.0,
        deadline_s=0.2, seed=0,
    )  # fmt: skip
    assert (step.sent, step.errors) == (2, 2)
    assert cancelled == 2
    assert all("deadline" in (r.answer.error or "") for r in records)
    assert not step.sustained(slo_s=1e9)
