"""The cross-job prefix cache: its bookkeeping (fake context), then the real engine reusing
cached KV cells with the real Qwen2.5-Coder-0.5B."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.engine import JobDone, JobSpec, SamplingParams, SequenceSpec, TokenDelta
from edge_agent.engine.admission import CellBudget
from edge_agent.engine.chat_template import Message
from edge_agent.engine.engine import Engine, EngineConfig
from edge_agent.engine.prefix_cache import MIN_REUSE_TOKENS, PrefixCache


class FakeCells:
    """Records which cells each sequence holds, as positions."""

    def __init__(self) -> None:
        self.held: dict[int, int] = {}

    def share_cells(self, source: int, target: int, count: int) -> None:
        assert self.held.get(source, 0) >= count, "shared cells the source does not have"
        self.held[target] = count

    def drop_sequence(self, seq: int) -> None:
        self.held.pop(seq, None)


def tokens(*runs: tuple[int, int]) -> list[int]:
    """Concatenated ranges, e.g. tokens((0, 40), (500, 510))."""
    return [t for start, stop in runs for t in range(start, stop)]


def make_cache(n_ctx: int = 4096, slots: int = 2) -> tuple[PrefixCache, FakeCells, CellBudget]:
    cells, budget = FakeCells(), CellBudget(n_ctx, max_sequences=4)
    return PrefixCache(cells, budget, range(100, 100 + slots)), cells, budget


def test_longest_match_is_reused_but_the_last_token_is_left_to_prefill() -> None:
    cache, cells, budget = make_cache()
    short, long = tokens((0, 30)), tokens((0, 60))
    cells.held[1] = len(short)
    cache.store(short, 1)
    cells.held[2] = len(long)
    cache.store(long, 2)  # supersedes the idle entry it begins with
    assert [e.cells for e in cache.entries] == [60]
    assert budget.reserved_cells == 60

    hit = cache.lookup(tokens((0, 50), (900, 910)))
    assert hit is not None
    assert hit.tokens == 50
    exact = cache.lookup(long)
    assert exact is not None
    assert exact.tokens == 59  # the last token's logits are needed
    assert cache.lookup(tokens((0, MIN_REUSE_TOKENS - 1), (900, 950))) is None
    assert cache.lookup(tokens((7, 80))) is None

    cache.attach(hit, [3])
    assert cells.held[3] == 50
    assert hit.entry.users == 1
    assert (cache.stats.hits, cache.stats.reused_tokens) == (1, 50)


def test_a_covered_prefix_is_not_stored_twice() -> None:
    cache, cells, budget = make_cache()
    cells.held[1] = 60
    cache.store(tokens((0, 60)), 1)
    cache.store(tokens((0, 40)), 1)
    assert len(cache.entries) == 1
    assert budget.reserved_cells == 60


def test_least_recently_used_idle_entry_makes_way_and_pinned_ones_stay() -> None:
    cache, cells, budget = make_cache(slots=2)
    for seq, start in ((1, 0), (2, 1000), (3, 2000)):
        cells.held[seq] = 40
        if seq == 2:
            pinned = cache.lookup(tokens((0, 40), (5, 6)))
            assert pinned is not None
            cache.attach(pinned, [9])
        cache.store(tokens((start, start + 40)), seq)
    # Slot pressure: the first entry was pinned, so the second (idle) one went.
    assert sorted(e.tokens[0] for e in cache.entries) == [0, 2000]
    assert cache.stats.evicted == 1
    newest = next(e for e in cache.entries if e.tokens[0] == 2000)
    assert newest.seq_id == 101  # the evicted entry's sequence id was reused
    assert budget.reserved_cells == 80


def test_one_off_prompts_cannot_push_out_a_prefix_that_was_reused() -> None:
    cache, cells, _ = make_cache(slots=2)
    shared = tokens((0, 40))
    cells.held[1] = 40
    cache.store(shared, 1)
    hit = cache.lookup(tokens((0, 40), (7, 9)))
    assert hit is not None
    cache.attach(hit, [2])
    cache.detach(hit.entry)  # the reusing job finished: idle, but proved shared
    for seq, start in ((3, 1000), (4, 2000), (5, 3000)):  # a stream of unique prompts
        cells.held[seq] = 40
        cache.store(tokens((start, start + 40)), seq)
    # The shared prefix is the oldest entry, yet it stays; the unique prompts replace each other.
    assert sorted(e.tokens[0] for e in cache.entries) == [0, 3000]
    assert cache.stats.evicted == 2


def test_make_room_evicts_only_when_that_makes_enough_room() -> None:
    cache, cells, budget = make_cache(n_ctx=1024, slots=2)
    cells.held[1] = 300
    cache.store(tokens((0, 300)), 1)
    budget.reserve(500)  # a running job
    free = budget.usable_cells - budget.reserved_cells
    assert not cache.make_room(free + 301)  # even evicting everything would not do
    assert len(cache.entries) == 1
    assert cache.make_room(free + 200)
    assert cache.entries == []
    assert budget.reserved_cells == 500
    assert 100 not in cells.held


def test_a_disabled_cache_stores_nothing() -> None:
    cache, cells, budget = make_cache(slots=0)
    cells.held[1] = 100
    cache.store(tokens((0, 100)), 1)
    assert cache.entries == []
    assert budget.reserved_cells == 0


# -- the real engine --------------------------------------------------------------------------

INSTRUCTIONS = (
    "You are a careful assistant. Answer in one short sentence, plainly, without lists, "
    "without headings and without repeating the question. Prefer concrete advice over "
    "general statements, and never mention that you are an AI model."
)


def make_engine(path: Path, slots: int, n_ctx: int = 2048) -> Engine:
    engine = Engine(
        path,
        EngineConfig(
            n_ctx=n_ctx, n_batch=256, max_sequences=4, threads=1, prefix_cache_slots=slots
        ),
    )
    engine.start()
    return engine


@pytest.fixture(scope="module")
def cached(small_model_path: Path) -> Iterator[Engine]:
    engine = make_engine(small_model_path, slots=2)
    yield engine
    engine.stop()


def chat_job(engine: Engine, question: str, max_tokens: int = 24) -> JobSpec:
    prompt = engine.chat.render([Message("system", INSTRUCTIONS), Message("user", question)])
    params = SamplingParams(max_tokens=max_tokens)
    return JobSpec(prompt.text, (SequenceSpec(params=params),), add_special=prompt.add_special)


async def run(engine: Engine, spec: JobSpec) -> tuple[str, JobDone]:
    text: list[str] = []
    done: JobDone | None = None
    async with engine.submit(spec) as handle:
        async for event in handle:
            if isinstance(event, TokenDelta):
                text.append(event.text)
            elif isinstance(event, JobDone):
                done = event
    assert done is not None
    return "".join(text), done


@pytest.mark.model
async def test_second_job_reuses_the_shared_prefix_and_answers_the_same(
    cached: Engine, small_model_path: Path
) -> None:
    await run(cached, chat_job(cached, "How do I keep basil alive indoors?"))
    before = cached.load()
    spec = chat_job(cached, "How can I stop my bike chain from rusting?")
    text, done = await run(cached, spec)
    after = cached.load()

    reused = after.prefix_cache_reused_tokens - before.prefix_cache_reused_tokens
    prefilled = after.prefill_tokens - before.prefill_tokens
    assert after.prefix_cache_hits == before.prefix_cache_hits + 1
    assert reused >= 40  # the system prompt and the template around it
    assert prefilled == done.prompt_tokens - reused
    assert after.prefix_cache_entries >= 1

    fresh = make_engine(small_model_path, slots=0)
    try:
        expected, _ = await run(fresh, spec)
        assert fresh.load().prefix_cache_reused_tokens == 0
    finally:
        fresh.stop()
    assert text.strip()
    assert text == expected  # greedy: the reused cells hold the same keys and values


@pytest.mark.model
async def test_cancelled_job_unpins_its_cache_entry_and_leaves_no_cells_reserved(
    cached: Engine,
) -> None:
    await run(cached, chat_job(cached, "What is a good way to learn chess openings?"))
    handle = cached.submit(chat_job(cached, "Why do cats purr?", max_tokens=200))
    async with handle:
        async for event in handle:
            if isinstance(event, TokenDelta):
                break
    for _ in range(100):
        if cached.load().running_sequences == 0:
            break
        await asyncio.sleep(0.02)
    load = cached.load()
    assert load.running_sequences == 0
    assert load.kv_cells_reserved == 0  # cached prefixes are not counted as load
    assert load.prefix_cache_cells > 0
    batcher = cached._batcher
    assert batcher is not None
    assert all(entry.users == 0 for entry in batcher.cache.entries)


@pytest.mark.model
async def test_a_job_that_needs_the_cached_cells_evicts_them(small_model_path: Path) -> None:
    engine = make_engine(small_model_path, slots=2, n_ctx=512)
    try:
        await run(engine, chat_job(engine, "Name a fast-growing herb."))
        load = engine.load()
        assert load.prefix_cache_entries == 1
        # A job that needs nearly every usable cell: only evicting the cache makes room.
        usable = load.kv_cells_total - max(16, load.kv_cells_total // 32)
        spec = chat_job(engine, "Say hello.", max_tokens=1)
        _, small = await run(engine, spec)
        big = chat_job(
            engine, "Describe a walk in a forest.", max_tokens=usable - small.prompt_tokens - 8
        )
        batcher = engine._batcher
        assert batcher is not None
        evicted = batcher.cache.stats.evicted
        text, done = await asyncio.wait_for(run(engine, big), timeout=300)
        assert done.completion_tokens > 0
        assert text
        assert batcher.cache.stats.evicted > evicted
    finally:
        engine.stop()
