"""The batcher over a fake llama.cpp context (tests/edge/fake_llama.py): no weights, fast.

Each test drives :class:`Batcher` the way the engine thread does (reap cancelled jobs, admit,
step) and reads back the batches the fake decoded, the events the jobs received and what the
budget, the KV cells and the samplers hold afterwards. ``test_engine.py`` and
``test_batched_path.py`` show the same behaviour on the real model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from edge_agent.engine import (
    EngineEvent,
    JobDone,
    JobFailed,
    JobSpec,
    JobStarted,
    SamplingParams,
    SequenceDone,
    SequenceSpec,
    TokenDelta,
)
from edge_agent.engine.admission import CellBudget
from edge_agent.engine.batcher import Batcher
from edge_agent.engine.job import JobState, build_job
from pice.errors import ServiceUnavailableError
from tests.edge.fake_llama import FakeContext, Row, SamplerFactory

E = TypeVar("E", JobStarted, TokenDelta, SequenceDone, JobDone, JobFailed)

MAX_SEQUENCES = 4
# At least MIN_REUSE_TOKENS (16) long, so the prefix cache keeps it.
SHARED = "You are a helpful assistant. Be brief. "


@dataclass
class Rig:
    ctx: FakeContext
    batcher: Batcher
    samplers: SamplerFactory
    cache_ids: range

    def submit(
        self, prefix: str, *sequences: str | SequenceSpec, adapter: str | None = None
    ) -> Job:
        specs = tuple(s if isinstance(s, SequenceSpec) else SequenceSpec(s) for s in sequences)
        job = Job()
        spec = JobSpec(prefix, specs, adapter=adapter)
        job.state = build_job(self.ctx.model, self.batcher.budget, spec, job.events.append)
        self.batcher.enqueue(job.state)
        return job

    def tick(self) -> bool:
        """One turn of the engine thread's loop."""
        self.batcher.reap_cancelled()
        self.batcher.admit()
        return self.batcher.step()

    def run(self) -> None:
        for _ in range(2000):
            if not self.batcher.busy:
                return
            if not self.tick() and self.batcher.busy:
                raise AssertionError("busy, but nothing to decode: a job can never be admitted")
        raise AssertionError("the batcher did not finish")

    def last_batch(self) -> list[Row]:
        return self.ctx.batches[-1]

    def assert_idle(self) -> None:
        """Nothing left behind: cells, budget, slots and samplers all back (cache aside)."""
        batcher, budget = self.batcher, self.batcher.budget
        assert not batcher.busy
        assert budget.free_slots == MAX_SEQUENCES
        assert budget.reserved_cells == batcher.cache.cells
        assert self.ctx.holders() <= set(self.cache_ids)
        assert all(s.closed for s in self.samplers.made)


@dataclass
class Job:
    state: JobState = field(init=False)
    events: list[EngineEvent] = field(default_factory=list)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def started(self) -> bool:
        return bool(self.of(JobStarted))

    def done(self) -> dict[int, SequenceDone]:
        return {e.seq: e for e in self.events if isinstance(e, SequenceDone)}

    def in_order(self) -> list[SequenceDone]:
        """The finished sequences by index (they finish in any order)."""
        done = self.done()
        return [done[i] for i in sorted(done)]

    def texts(self) -> list[str]:
        return [d.text for d in self.in_order()]

    def streamed(self, seq: int) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TokenDelta) and e.seq == seq)

    def job_done(self) -> JobDone:
        [event] = self.of(JobDone)
        assert self.events[-1] is event
        return event


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig() -> Iterator[MakeRig]:
    batchers: list[Batcher] = []

    def make(n_ctx: int = 512, n_batch: int = 64, cache_slots: int = 0) -> Rig:
        ctx = FakeContext(n_ctx=n_ctx, n_seq_max=MAX_SEQUENCES + cache_slots)
        samplers = SamplerFactory()
        cache_ids = range(MAX_SEQUENCES, MAX_SEQUENCES + cache_slots)
        batcher = Batcher(
            ctx, CellBudget(n_ctx, MAX_SEQUENCES), n_batch, cache_ids, new_sampler=samplers
        )
        batchers.append(batcher)
        return Rig(ctx, batcher, samplers, cache_ids)

    yield make
    for batcher in batchers:
        batcher.batch.close()


def say(reply: str, *, max_tokens: int = 96, stop: tuple[str, ...] = ()) -> SequenceSpec:
    """A sequence the fake model answers with ``reply``."""
    return SequenceSpec(f"say:{reply}|", SamplingParams(max_tokens=max_tokens, stop=stop))


# -- admission --------------------------------------------------------------------------


def test_admission_is_fifo_the_head_waits_and_nothing_overtakes_it(make_rig: MakeRig) -> None:
    rig = make_rig(n_ctx=256)  # 240 usable cells
    big = rig.submit("p" * 60, say("aaaa", max_tokens=100))  # 69 + 100 = 169 cells
    waits = rig.submit("q" * 40, say("bb", max_tokens=30))  # 47 + 30 = 77: 246 > 240
    small = rig.submit("", say("c", max_tokens=4))  # 6 + 4 = 10 would fit, but is behind
    rig.tick()
    assert rig.batcher.running == [big.state]
    assert list(rig.batcher.waiting) == [waits.state, small.state]
    assert not waits.started
    assert not small.started
    while not big.of(JobDone):
        assert list(rig.batcher.waiting) == [waits.state, small.state]
        rig.tick()
    rig.tick()  # the big job's cells are back: the head goes first, then the job behind it
    assert rig.batcher.running == [waits.state, small.state]
    rig.run()
    assert (big.texts(), waits.texts(), small.texts()) == (["aaaa"], ["bb"], ["c"])
    rig.assert_idle()


# -- prefill -----------------------------------------------------------------------------


def test_a_shared_prefix_is_prefilled_once_with_every_sequence_id(make_rig: MakeRig) -> None:
    rig = make_rig()
    job = rig.submit("P" * 30, say("ab"), say("cd"), say("ef"))
    rig.tick()
    ids = tuple(seq.seq_id for seq in job.state.sequences)
    assert len(set(ids)) == 3
    batch = rig.last_batch()
    prefix, suffixes = batch[:30], batch[30:]
    assert [r.pos for r in prefix] == list(range(30))
    assert all(r.seq_ids == ids for r in prefix)  # one cell per position, for all three
    assert [r.logits for r in prefix] == [False] * 29 + [True]
    assert [r.seq_ids for r in suffixes] == [(i,) for i in ids for _ in range(7)]
    assert [r.pos for r in suffixes] == list(range(30, 37)) * 3
    assert rig.batcher.counters.prefill_tokens == 30 + 3 * 7
    rig.run()
    assert job.texts() == ["ab", "cd", "ef"]
    assert job.job_done() == JobDone(prompt_tokens=51, completion_tokens=6)
    assert rig.batcher.counters.prefill_tokens == 51
    rig.assert_idle()


def test_sequences_without_a_suffix_sample_from_the_prefix_last_row(make_rig: MakeRig) -> None:
    rig = make_rig()
    job = rig.submit("say:hi|", SequenceSpec(""), SequenceSpec(""))  # chat with n=2
    rig.tick()
    ids = tuple(seq.seq_id for seq in job.state.sequences)
    assert [(r.seq_ids, r.logits) for r in rig.last_batch()] == [(ids, False)] * 6 + [(ids, True)]
    rig.tick()  # each feeds back its own first token, under its own id
    assert [(r.pos, r.seq_ids) for r in rig.last_batch()] == [(7, (i,)) for i in ids]
    rig.run()
    assert job.texts() == ["hi", "hi"]
    rig.assert_idle()


def test_long_prefills_are_chunked_by_n_batch(make_rig: MakeRig) -> None:
    rig = make_rig(n_batch=16)
    job = rig.submit("L" * 40, say("ok"))
    rig.run()
    sizes = [len(b) for b in rig.ctx.batches]
    assert sizes[:4] == [16, 16, 15, 1]  # 40 prefix + 8 suffix tokens, then one per step
    assert job.texts() == ["ok"]


def test_a_job_arriving_mid_run_joins_the_running_batch(make_rig: MakeRig) -> None:
    rig = make_rig()
    first = rig.submit("", say("a" * 12, max_tokens=20))
    for _ in range(3):
        rig.tick()
    [running] = first.state.sequences
    assert running.generated == 3
    second = rig.submit("say:bbb|", SequenceSpec(""))
    rig.tick()
    batch = rig.last_batch()
    # The running sequence's next token first, then the newcomer's whole prompt: one decode.
    assert batch[0] == Row(batch[0].token, running.n_past - 1, (running.seq_id,), True)
    [newcomer] = second.state.sequences
    assert [r.seq_ids for r in batch[1:]] == [(newcomer.seq_id,)] * 8
    rig.run()
    assert first.texts() == ["a" * 12]
    assert second.texts() == ["bbb"]
    # Alone, the first takes 13 steps (12 tokens, then end of generation); the second's 4
    # steps ran inside those, side by side with it.
    assert rig.batcher.counters.decode_steps == 13
    rig.assert_idle()


# -- finishing ---------------------------------------------------------------------------


def test_sequences_stop_at_end_of_generation_or_a_stop_string_and_hit_length(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    job = rig.submit(
        "",
        say("hi"),
        say("one<END>two", stop=("<END>",)),
        say("abcdefgh", max_tokens=3),
    )
    rig.run()
    done = job.done()
    assert [(d.finish_reason, d.text, d.completion_tokens) for d in job.in_order()] == [
        ("stop", "hi", 2),  # the end-of-generation token is not counted
        ("stop", "one", 8),  # "one<END>": the stop string is generated, never sent
        ("length", "abc", 3),
    ]
    for seq, d in done.items():
        assert job.streamed(seq) == d.text
        assert d.logprob_sum < 0
        assert d.logprob_mean == pytest.approx(d.logprob_sum / d.completion_tokens)
        assert d.prompt_tokens == len(job.state.sequences[seq].suffix)
    assert not any("<" in e.text for e in job.of(TokenDelta))  # held back, then dropped
    assert job.job_done() == JobDone(prompt_tokens=7 + 16 + 13, completion_tokens=13)
    # Each sequence got a sampler built from its own parameters.
    assert [s.params.max_tokens for s in rig.samplers.made] == [96, 96, 3]
    rig.assert_idle()


def test_a_sequence_told_to_stop_loops_stops_at_its_loop_and_frees_its_slot(
    make_rig: MakeRig,
) -> None:
    looping = "It was a single," + " single," * 20
    params = SamplingParams(max_tokens=200, stop_loops=True)
    rig = make_rig(n_ctx=2048)
    job = rig.submit(
        "",
        SequenceSpec(f"say:{looping}|", params),
        say(looping, max_tokens=200),  # the same text, the guard off
        SequenceSpec("say:Say no, no, no, no to that.|", params),  # emphasis, not a loop
    )
    rig.run()
    guarded, unguarded, emphasis = job.in_order()
    assert guarded.finish_reason == "stop"
    # Stopped once the eighth copy was complete (one byte a token here): when the space that
    # follows it arrived, not 20 copies later.
    assert guarded.text == "It was a single," + " single," * 7 + " "
    assert guarded.completion_tokens == len(guarded.text)
    assert (unguarded.finish_reason, unguarded.text) == ("stop", looping)
    assert (emphasis.finish_reason, emphasis.text) == ("stop", "Say no, no, no, no to that.")
    rig.assert_idle()


def test_cancelling_frees_the_cells_slots_and_samplers(make_rig: MakeRig) -> None:
    rig = make_rig()
    running = rig.submit("R" * 20, SequenceSpec(""), SequenceSpec(""))  # "x" forever
    queued = rig.submit("Q" * 10, "a", "b", "c")  # 3 sequences: only 2 slots are free
    for _ in range(3):
        rig.tick()
    assert running.state.sequences[0].generated == 3
    assert rig.batcher.waiting[0] is queued.state
    assert rig.ctx.cells
    running.state.cancelled = True
    queued.state.cancelled = True
    assert rig.tick() is False  # reaped before building a batch: nothing left to decode
    assert [d.finish_reason for d in running.done().values()] == ["cancelled"] * 2
    assert [running.streamed(i) for i in range(2)] == running.texts() == ["xxx", "xxx"]
    assert running.job_done().completion_tokens == 6
    assert not queued.started
    assert [d.finish_reason for d in queued.done().values()] == ["cancelled"] * 3
    assert queued.job_done().completion_tokens == 0
    assert rig.batcher.counters.cancellations == 5
    assert rig.ctx.cells == []  # the shared prefix went with the last sequence holding it
    rig.assert_idle()


def test_a_cancelled_job_leaves_the_queue_at_once_even_behind_a_waiting_head(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    running = rig.submit("", "a", "b", "c")  # 3 of the 4 slots
    head = rig.submit("", "d", "e")  # waits for a second slot
    behind = rig.submit("", "f")  # would fit, but waits behind the head
    rig.tick()
    behind.state.cancelled = True
    rig.tick()
    assert [d.finish_reason for d in behind.done().values()] == ["cancelled"]
    assert behind.job_done().completion_tokens == 0
    assert list(rig.batcher.waiting) == [head.state]
    assert not head.started
    running.state.cancelled = True
    head.state.cancelled = True
    rig.run()
    rig.assert_idle()


def test_a_job_cancelled_mid_prefill_leaves_no_cells(make_rig: MakeRig) -> None:
    rig = make_rig(n_batch=16)
    job = rig.submit("M" * 60, "a", "b")
    rig.tick()
    rig.tick()
    assert job.state.prefix_done == 32
    job.state.cancelled = True
    rig.tick()
    assert job.job_done().completion_tokens == 0
    assert rig.ctx.cells == []
    rig.assert_idle()


# -- no KV slot --------------------------------------------------------------------------


def test_no_kv_slot_halves_the_prefill_cap_then_fails_the_newest_job(make_rig: MakeRig) -> None:
    rig = make_rig(n_batch=64)
    older = rig.submit("", say("a" * 20))
    rig.tick()
    prompt = "Q" * 33 + "say:bb|"  # 40 tokens
    newest = rig.submit(prompt, SequenceSpec(""))
    rig.ctx.refuse = 7
    for _ in range(7):
        rig.tick()
    # Every attempt: the older sequence's one token plus as much prefill as the cap allows.
    assert [len(b) for b in rig.ctx.batches[-7:]] == [41, 33, 17, 9, 5, 3, 2]
    assert rig.ctx.accepted[-7:] == [False] * 7
    [failed] = newest.of(JobFailed)
    assert isinstance(failed.error, ServiceUnavailableError)
    assert failed.error.status_code == 503
    assert failed.error.headers() == {"Retry-After": "1"}
    assert newest.events[-1] is failed
    assert not newest.done()
    assert rig.batcher.running == [older.state]
    rig.run()
    assert older.texts() == ["a" * 20]  # refused batches changed nothing for it
    assert rig.batcher.counters.prefill_tokens == len("say:" + "a" * 20 + "|")
    rig.assert_idle()


def test_no_kv_slot_shrinks_the_prefill_and_success_grows_it_back(make_rig: MakeRig) -> None:
    rig = make_rig(n_batch=64)
    job = rig.submit("L" * 100, say("ok"))
    rig.ctx.refuse = 2
    rig.run()
    sizes = [len(b) for b in rig.ctx.batches]
    # 64 and 32 refused; 16 fits, then the cap doubles back: 32, then the remaining 52 + 7.
    assert sizes[:5] == [64, 32, 16, 32, 59]
    assert rig.ctx.accepted[:5] == [False, False, True, True, True]
    assert job.texts() == ["ok"]
    assert rig.batcher.counters.prefill_tokens == 107  # refused batches are not counted
    rig.assert_idle()


def test_no_kv_slot_evicts_an_idle_cached_prefix_before_shrinking_prefill(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(cache_slots=2)
    rig.submit(SHARED, say("x"))
    rig.run()
    assert len(rig.batcher.cache.entries) == 1
    job = rig.submit("Another prompt that shares nothing. ", say("y"))
    rig.ctx.refuse = 1
    rig.tick()
    assert rig.batcher.cache.entries == []
    assert rig.batcher.cache.stats.evicted == 1
    assert rig.ctx.holders() == set()
    rig.tick()
    refused, retried = rig.ctx.batches[-2:]
    assert retried == refused  # same size: the cap was left alone
    rig.run()
    assert job.texts() == ["y"]
    rig.assert_idle()


def test_a_failed_decode_fails_the_jobs_in_the_batch_and_frees_them(make_rig: MakeRig) -> None:
    rig = make_rig()
    decoding = rig.submit("", say("a" * 10))
    rig.tick()
    prefilling = rig.submit("P" * 30, "b", "c")
    rig.ctx.fail = 1
    rig.tick()
    for job in (decoding, prefilling):
        [failed] = job.of(JobFailed)
        assert failed.error.status_code == 500
        assert job.events[-1] is failed
    rig.assert_idle()  # the cells the decoding sequence held are gone
    after = rig.submit("", say("ok"))
    rig.run()
    assert after.texts() == ["ok"]
    rig.assert_idle()


# -- prefix cache ------------------------------------------------------------------------


def test_a_cached_prefix_is_reused_and_only_the_rest_prefilled(make_rig: MakeRig) -> None:
    rig = make_rig(cache_slots=2)
    first = rig.submit(SHARED, say("abc"))
    rig.run()
    n = len(SHARED)
    [entry] = rig.batcher.cache.entries
    assert entry.cells == n
    assert rig.ctx.holders() == {entry.seq_id}
    assert rig.ctx.positions(entry.seq_id) == list(range(n))
    prefilled = rig.batcher.counters.prefill_tokens
    assert prefilled == n + 8

    second = rig.submit(SHARED, say("xyz"))
    rig.tick()
    batch = rig.last_batch()
    # The cache supplies all but the prefix's last token, whose logits are needed.
    assert [r.pos for r in batch] == list(range(n - 1, n + 8))
    assert second.state.reused == n - 1
    assert entry.users == 1  # pinned while the job runs
    assert rig.batcher.cache.stats.hits == 1
    assert rig.batcher.cache.stats.reused_tokens == n - 1
    rig.run()
    assert first.texts() == ["abc"]
    assert second.texts() == ["xyz"]
    assert second.job_done().prompt_tokens == n + 8  # usage counts the whole prompt
    assert rig.batcher.counters.prefill_tokens - prefilled == 1 + 8
    assert entry.users == 0
    assert rig.batcher.cache.entries == [entry]
    assert rig.batcher.budget.reserved_cells == n  # the entry, nothing else
    rig.assert_idle()
