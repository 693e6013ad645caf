"""Open-loop load: requests sent at Poisson arrival times whatever the system's backlog.

Closed-loop clients (send the next request when the last one returns) slow down with the
system and hide its queueing; open-loop arrivals do not, which is how a p95 SLO breaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from pice_bench.questions import Question
from pice_bench.records import Answer, Mode, Phase, RequestRecord
from pice_bench.schedule import LoadSchedule
from pice_bench.throughput import LoadStep

AnswerFn = Callable[[Question], Awaitable[Answer]]


async def run_load_step(
    mode: Mode,
    answer: AnswerFn,
    schedule: LoadSchedule[Question],
    *,
    deadline_s: float,
    on_done: Callable[[], object] | None = None,
) -> tuple[LoadStep, list[RequestRecord]]:
    """Send the schedule's questions at its times; wait for every answer.

    The schedule (:func:`pice_bench.schedule.load_schedule`) is built once per rate and shared
    by every mode, so each mode sees the same arrivals.

    A request still running ``deadline_s`` after the step's start is cancelled (closing its
    connection, so the servers stop working on it) and recorded as an error: the step's cost
    stays bounded even when the system is far past saturation.
    """
    rate = schedule.rate
    start = time.perf_counter()

    async def one(question: Question, offset: float) -> RequestRecord:
        await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
        started = time.perf_counter() - start
        try:
            result = await asyncio.wait_for(answer(question), timeout=deadline_s - started)
        except TimeoutError:
            result = Answer(
                latency_s=time.perf_counter() - start - started,
                error=f"cancelled at the step deadline ({deadline_s:g} s)",
            )
        if on_done is not None:
            on_done()
        return RequestRecord.of(
            mode, Phase.LOAD, question, result, rate=rate, scheduled_s=offset, started_s=started
        )

    records = await asyncio.gather(
        *(one(q, off) for q, off in zip(schedule.questions, schedule.offsets, strict=True))
    )
    return LoadStep.of(mode, rate, records), list(records)
