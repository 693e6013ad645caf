"""The batched engine against the real Qwen2.5-Coder-0.5B model (one engine for the module)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.engine import (
    EngineEvent,
    JobDone,
    JobSpec,
    JobStarted,
    SamplingParams,
    SequenceDone,
    SequenceSpec,
    TokenDelta,
)
from edge_agent.engine.chat_template import Message
from edge_agent.engine.engine import Engine, EngineConfig, JobHandle
from edge_agent.prompts import expansion_messages, point_stops, point_suffix
from pice.errors import ContextOverflowError

pytestmark = pytest.mark.model

MAX_SEQUENCES = 8
N_CTX = 2048

QUESTION = "How can I sleep better at night?"
SKETCH = [
    "Keep a regular schedule",
    "Limit caffeine",
    "Make the bedroom dark",
    "Avoid screens before bed",
    "Exercise during the day",
    "Watch evening meals",
    "Wind down with a routine",
    "See a doctor if needed",
]


@pytest.fixture(scope="module")
def engine(small_model_path: Path) -> Iterator[Engine]:
    eng = Engine(
        small_model_path,
        EngineConfig(
            n_ctx=N_CTX,
            n_batch=256,
            max_sequences=MAX_SEQUENCES,
            threads=1,
            # These tests count prefill work; the prefix cache has tests of its own.
            prefix_cache_slots=0,
        ),
    )
    eng.start()
    yield eng
    eng.stop()


@dataclass
class Outcome:
    started: JobStarted | None = None
    deltas: dict[int, list[str]] = field(default_factory=dict)
    done: dict[int, SequenceDone] = field(default_factory=dict)
    job_done: JobDone | None = None
    events: list[EngineEvent] = field(default_factory=list)


async def collect(handle: JobHandle) -> Outcome:
    out = Outcome()
    async with handle:
        async for event in handle:
            out.events.append(event)
            if isinstance(event, JobStarted):
                out.started = event
            elif isinstance(event, TokenDelta):
                out.deltas.setdefault(event.seq, []).append(event.text)
            elif isinstance(event, SequenceDone):
                out.done[event.seq] = event
            elif isinstance(event, JobDone):
                out.job_done = event
    return out


def chat_prefix(engine: Engine, text: str) -> tuple[str, bool]:
    prompt = engine.chat.render([Message("user", text)])
    return prompt.text, prompt.add_special


def expand_spec(engine: Engine, points: Sequence[int], max_tokens: int = 16) -> JobSpec:
    prompt = engine.chat.render(expansion_messages(QUESTION, SKETCH))
    seqs = tuple(
        SequenceSpec(
            point_suffix(p, SKETCH[p]),
            SamplingParams(max_tokens=max_tokens, stop=point_stops(p, ["\n"])),
        )
        for p in points
    )
    return JobSpec(prompt.text, seqs, add_special=prompt.add_special)


def common_prefix_ratio(a: str, b: str) -> float:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n / max(len(a), len(b), 1)


def is_idle(engine: Engine) -> bool:
    load = engine.load()
    return (
        load.running_sequences == 0
        and load.kv_cells_reserved == 0
        and load.free_sequence_slots == MAX_SEQUENCES
    )


async def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_batched_points_agree_with_lone_decoding_and_prefix_is_prefilled_once(
    engine: Engine,
) -> None:
    points = list(range(len(SKETCH)))
    before = engine.load().prefill_tokens
    handle = engine.submit(expand_spec(engine, points))
    batched = await collect(handle)
    prefilled = engine.load().prefill_tokens - before
    assert batched.started is not None
    # k points cost prefix + sum(suffix), not k x prefix.
    assert prefilled == handle.prompt_tokens == batched.started.prompt_tokens
    assert prefilled < 2 * handle.prefix_tokens
    suffixes = prefilled - handle.prefix_tokens
    assert 0 < suffixes < len(points) * 20

    lone = [await collect(engine.submit(expand_spec(engine, [p]))) for p in points]
    pairs = [(batched.done[i].text, lone[i].done[0].text) for i in points]
    identical = sum(a == b for a, b in pairs)
    ratio = sum(common_prefix_ratio(a, b) for a, b in pairs) / len(pairs)
    assert identical >= 6 or ratio >= 0.8, pairs
    for i in points:
        done = batched.done[i]
        assert done.text == "".join(batched.deltas.get(i, []))
        assert done.text.strip(), f"point {i} is empty"
        assert "\n" not in done.text
        assert done.completion_tokens >= 1
        assert done.logprob_sum < 0
        assert done.logprob_mean == pytest.approx(done.logprob_sum / done.completion_tokens)
        assert done.ttft_ms is not None
        assert done.ttft_ms > 0


async def test_concurrent_jobs_all_complete(engine: Engine) -> None:
    questions = ["What is rain?", "Name a prime number.", "What colour is grass?"]
    handles = []
    for q in questions:
        prefix, add_special = chat_prefix(engine, q)
        seqs = tuple(
            SequenceSpec("", SamplingParams(temperature=0.8, seed=i, max_tokens=16))
            for i in range(2)
        )
        handles.append(engine.submit(JobSpec(prefix, seqs, add_special=add_special)))
    outcomes = await asyncio.gather(*(collect(h) for h in handles))
    for out in outcomes:
        assert out.job_done is not None
        assert sorted(out.done) == [0, 1]
        assert all(d.finish_reason in ("stop", "length") for d in out.done.values())
        assert out.job_done.completion_tokens == sum(d.completion_tokens for d in out.done.values())
    assert await wait_for(lambda: is_idle(engine), 1.0), engine.load()


async def test_cancellation_frees_capacity_and_admits_the_queued_job(engine: Engine) -> None:
    prefix, add_special = chat_prefix(engine, "Count from 1 to 1000, one number per line.")
    # Two sequences whose max_tokens is clamped to fill the whole KV budget: nothing else fits.
    hog = engine.submit(
        JobSpec(
            prefix,
            tuple(SequenceSpec("", SamplingParams(max_tokens=N_CTX)) for _ in range(2)),
            add_special=add_special,
        )
    )
    events = aiter(hog)
    first = await anext(events)
    assert isinstance(first, JobStarted)
    assert await wait_for(lambda: engine.load().running_sequences == 2, 5)

    waiting = engine.submit(
        JobSpec(prefix, (SequenceSpec("", SamplingParams(max_tokens=4)),), add_special=add_special)
    )
    assert await wait_for(lambda: engine.load().queued_jobs == 1, 5), engine.load()
    cancelled_before = engine.load().cancellations

    t0 = time.monotonic()
    await hog.__aexit__(None, None, None)  # what a disconnected client's handler does
    waiting_events = aiter(waiting)
    started = await asyncio.wait_for(anext(waiting_events), timeout=1.0)
    assert isinstance(started, JobStarted)

    def freed() -> bool:
        load = engine.load()
        return (
            load.cancellations - cancelled_before == 2
            and load.queued_jobs == 0
            and load.running_sequences <= 1
            and load.kv_cells_reserved <= started.prompt_tokens + 4
        )

    assert await wait_for(freed, 1.0 - (time.monotonic() - t0)), engine.load()

    rest = [e async for e in waiting_events]
    assert isinstance(rest[-1], JobDone)
    # The cancelled job reports its sequences as cancelled, then ends.
    hog_rest = [e async for e in events]
    reasons = [e.finish_reason for e in hog_rest if isinstance(e, SequenceDone)]
    assert reasons == ["cancelled", "cancelled"]
    assert isinstance(hog_rest[-1], JobDone)
    assert await wait_for(lambda: is_idle(engine), 1.0), engine.load()


async def test_stop_string_ends_the_sequence_and_is_not_emitted(engine: Engine) -> None:
    prefix, add_special = chat_prefix(
        engine, "Write the numbers from 1 to 20 separated by commas, nothing else."
    )
    spec = JobSpec(
        prefix,
        (SequenceSpec("", SamplingParams(max_tokens=48, stop=("5",))),),
        add_special=add_special,
    )
    out = await collect(engine.submit(spec))
    done = out.done[0]
    assert done.finish_reason == "stop"
    assert "5" not in done.text
    assert "4" in done.text
    assert done.completion_tokens < 48


async def test_max_tokens_gives_length(engine: Engine) -> None:
    prefix, add_special = chat_prefix(engine, "Write a long story about a dragon.")
    spec = JobSpec(
        prefix, (SequenceSpec("", SamplingParams(max_tokens=5)),), add_special=add_special
    )
    out = await collect(engine.submit(spec))
    assert out.done[0].finish_reason == "length"
    assert out.done[0].completion_tokens == 5


async def test_prompt_longer_than_the_context_is_refused(engine: Engine) -> None:
    prefix, add_special = chat_prefix(engine, "word " * (N_CTX + 100))
    spec = JobSpec(prefix, (SequenceSpec(""),), add_special=add_special)
    with pytest.raises(ContextOverflowError):
        engine.submit(spec)


async def test_max_tokens_is_clamped_when_only_the_prompt_fits(engine: Engine) -> None:
    prefix, add_special = chat_prefix(engine, "word " * (N_CTX - 300))
    spec = JobSpec(
        prefix, (SequenceSpec("", SamplingParams(max_tokens=5000)),), add_special=add_special
    )
    async with engine.submit(spec) as handle:
        assert handle.max_tokens[0] < 5000
        assert handle.prompt_tokens + handle.max_tokens[0] <= N_CTX
        assert handle.max_tokens[0] >= 100
    # Leaving the block cancelled it; the engine is free again.
    assert await wait_for(lambda: engine.load().kv_cells_reserved == 0, 5)


async def test_events_of_a_step_reach_the_loop_in_one_wake_up(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 points decode in lockstep: ~4 token events per step, one cross-thread call per step."""
    loop = asyncio.get_running_loop()
    calls = 0
    real = loop.call_soon_threadsafe

    def counting(callback: Callable[..., object], *args: object) -> asyncio.Handle:
        nonlocal calls
        calls += 1
        return real(callback, *args)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    out = await collect(engine.submit(expand_spec(engine, [0, 1, 2, 3], max_tokens=12)))
    deltas = sum(len(d) for d in out.deltas.values())
    assert deltas >= 12  # every point said something
    assert out.job_done is not None
    # Per event this would be > len(out.events); per step it is about a quarter of that.
    assert calls <= len(out.events) / 2, (calls, len(out.events))
