"""The open-loop load runner, driven by a stand-in answer function (no servers)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from pice_bench.load import run_load_step
from pice_bench.modes import Endpoints, Systems
from pice_bench.questions import Question
from pice_bench.records import Answer, Mode
from pice_bench.report import render_markdown
from pice_bench.results import BenchResults
from pice_bench.runner import LoadSpec, RunSpec, run_load
from pice_bench.schedule import load_schedule

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

    schedule = load_schedule(QUESTIONS, 50.0, max_count=8, max_duration=10.0, seed=1)
    step, records = await run_load_step(Mode.CLOUD, slow, schedule, deadline_s=10.0)
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

    schedule = load_schedule(QUESTIONS, 100.0, max_count=2, max_duration=1.0, seed=0)
    step, records = await run_load_step(Mode.PICE, hang, schedule, deadline_s=0.2)
    assert (step.sent, step.errors) == (2, 2)
    assert cancelled == 2
    assert all("deadline" in (r.answer.error or "") for r in records)
    assert not step.sustained(slo_s=1e9)


async def test_every_mode_gets_the_same_arrival_schedule(tmp_path: Path) -> None:
    """run_load builds one schedule per rate and hands it to every mode."""
    seen: dict[Mode, list[str]] = {}

    class Recording:
        def answer_fn(self, mode: Mode) -> Callable[[Question], Awaitable[Answer]]:
            async def answer(question: Question) -> Answer:
                seen.setdefault(mode, []).append(question.id)
                return Answer(text="ok", latency_s=0.0)

            return answer

    modes = [Mode.CLOUD, Mode.PICE, Mode.FLEET]
    spec = RunSpec(
        questions=QUESTIONS, modes=modes, endpoints=Endpoints(None, None, ""), max_tokens=8,
        slo_seconds=60.0, out_dir=tmp_path, seed=5,
        load=LoadSpec(rates=(200.0, 100.0), max_count=30, max_duration=math.inf),
    )  # fmt: skip
    results = BenchResults(config={})
    await run_load(cast("Systems", Recording()), spec, results)

    by_mode: dict[Mode, list[tuple[float, str, float | None]]] = {}
    for r in results.requests:
        by_mode.setdefault(r.mode, []).append((r.rate or 0.0, r.question_id, r.scheduled_s))
    assert set(by_mode) == set(modes)
    reference = by_mode[Mode.CLOUD]
    assert len(reference) == 60  # 30 per step, two steps: no window cuts a step short
    for mode in modes:
        assert by_mode[mode] == reference
    # The schedule is recorded with the results, so a later reader can check it matched.
    recorded = results.config["load_schedules"]
    assert set(recorded) == {"100", "200"}
    assert all(entry["requests"] == 30 for entry in recorded.values())
    md = render_markdown(results)
    assert recorded["100"]["fingerprint"] in md
    assert "the same for every mode" in md


def test_a_schedule_is_the_same_whoever_builds_it_and_differs_by_seed() -> None:
    a = load_schedule(QUESTIONS, 0.05, max_count=30, seed=1)
    assert len(a) == 30
    assert a == load_schedule(QUESTIONS, 0.05, max_count=30, seed=1)
    assert a.fingerprint(lambda q: q.id) == load_schedule(
        QUESTIONS, 0.05, max_count=30, seed=1
    ).fingerprint(lambda q: q.id)
    other = load_schedule(QUESTIONS, 0.05, max_count=30, seed=2)
    assert other.fingerprint(lambda q: q.id) != a.fingerprint(lambda q: q.id)
    assert [q.id for q in a.questions[:4]] == ["q0", "q1", "q2", "q0"]
