"""Continuous batching: one llama_decode per step over every running sequence.

Each step builds one batch: first the next token of every generating sequence, then, in the
remaining ``n_batch`` budget, prefill tokens of admitted jobs in admission order. A job's
prefix tokens carry the sequence ids of all its sequences, so the prefix is computed and
stored once (unified KV cache); its suffixes follow, each under its own sequence id. New jobs
join at the next step, and a finished or cancelled sequence leaves at the next step with its
KV cells freed. A job whose prefix begins like a recent one reuses those cells from the prefix
cache and prefills only the rest. Everything here runs on the engine thread.

Named LoRA adapters (``--lora-module``): llama.cpp applies adapters per context, not per
sequence, so sequences of different adapters cannot share a ``llama_decode``. A step groups the
running jobs by adapter and, when more than one group is active, decodes each group in a batch
of its own with its adapter selected just before (``DecodeContext.use_adapter``), sampling that
group before the next decode overwrites the logits. Every active group decodes once per step,
so no group waits for another; the order rotates each step, so no group is always the one whose
tokens come last. With one group active (the common case: no modules, or all traffic on one
model) a step is one decode, as without adapters, and selecting the group's adapter is a no-op
unless it changed.

The batcher reaches llama.cpp only through :class:`DecodeContext` (what it uses of
``LlamaContext`` and ``LlamaModel``), the ``llama_batch`` it fills (:class:`TokenBatch`) and
the samplers ``new_sampler`` builds, so ``tests/edge/test_batcher_fake.py`` runs it over a
fake context, with no weights, and reads back exactly the batches llama.cpp would decode.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.engine.admission import CellBudget
from edge_agent.engine.job import JobState, SequenceState, Tokenizer, finish_reason_for
from edge_agent.engine.llama import DECODE_NO_KV_SLOT, DECODE_OK, TokenBatch
from edge_agent.engine.prefix_cache import CellSharing, PrefixCache, PrefixHit
from edge_agent.engine.sampling import Sampler, SamplerFactory, token_logprob, top_logprobs
from edge_agent.engine.stats import EngineCounters, ThroughputWindow
from edge_agent.engine.text import TextAssembler
from edge_agent.engine.types import (
    FinishReason,
    JobDone,
    JobFailed,
    JobStarted,
    SequenceDone,
    TokenDelta,
    TokenLogprob,
    TopLogprob,
)
from pice.errors import PiceError, ServiceUnavailableError
from pice.loops import LoopWatch

logger = logging.getLogger(__name__)


class DecodeModel(Tokenizer, Protocol):
    """What the batcher (and the warm-up's :func:`build_job`) needs of ``LlamaModel``."""

    def piece(self, token: int) -> bytes: ...

    def is_eog(self, token: int) -> bool: ...


class DecodeContext(CellSharing, Protocol):
    """What the batcher needs of ``LlamaContext``: decode a batch, read logits, move cells."""

    @property
    def model(self) -> DecodeModel: ...

    @property
    def ptr(self) -> Any:
        """The raw context, handed to the samplers (llama.cpp's sample from it)."""
        ...

    @property
    def n_seq_max(self) -> int: ...

    def decode(self, batch: TokenBatch) -> int:
        """0 = ok, ``DECODE_NO_KV_SLOT`` = no room (nothing changed), <0 = error."""
        ...

    def use_adapter(self, name: str | None) -> None:
        """Decode from now on under the named adapter (None: the base model); cheap when
        ``name`` is already selected."""
        ...

    def logits(self, index: int) -> npt.NDArray[np.float32]: ...


@dataclass
class _Chunk:
    """Prefill work placed in the batch, committed only if the decode succeeds."""

    job: JobState
    seq: SequenceState | None  # None = prefix tokens
    count: int


@dataclass(frozen=True)
class _Room:
    """A job fits now; ``hit`` is the cached prefix it starts from, if any."""

    hit: PrefixHit | None


class Batcher:
    """Continuous batching over one context: admission, prefill, one decode, sampling.

    Named for what it does to distinguish it from the gateway's ``Scheduler``
    (``pice_gateway.placement``), which places sketch points on edges.
    """

    def __init__(
        self,
        ctx: DecodeContext,
        budget: CellBudget,
        n_batch: int,
        cache_seq_ids: Sequence[int] = (),
        new_sampler: SamplerFactory = Sampler,
    ) -> None:
        self.ctx = ctx
        self._new_sampler = new_sampler
        self.model = ctx.model
        self.budget = budget
        self.cache = PrefixCache(ctx, budget, cache_seq_ids)
        self.n_batch = n_batch
        self.batch = TokenBatch(n_batch, ctx.n_seq_max)
        self.waiting: deque[JobState] = deque()
        self.running: list[JobState] = []  # in admission order
        self.counters = EngineCounters()
        self.throughput = ThroughputWindow()
        # Shrinks when llama.cpp finds no KV slot for a batch, grows back on success.
        self._prefill_cap = n_batch
        # Rotates the order adapter groups decode in when several are active.
        self._turn = 0

    # -- queue -------------------------------------------------------------------------

    def enqueue(self, job: JobState) -> None:
        self.waiting.append(job)

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    def running_sequences(self) -> int:
        return sum(len(job.live()) for job in self.running)

    def queued_sequences(self) -> int:
        return sum(len(job.sequences) for job in self.waiting)

    def admit(self) -> None:
        """Admit waiting jobs in strict FIFO order: the head waits until it fits."""
        while self.waiting:
            head = self.waiting[0]
            if head.cancelled:
                self.waiting.popleft()
                self._cancel_waiting(head)
                continue
            room = self._room_for(head)
            if room is None:
                return
            self.waiting.popleft()
            hit = room.hit
            reused = hit.tokens if hit else 0
            seq_ids = self.budget.admit(head.cost, reused)
            for seq, seq_id in zip(head.sequences, seq_ids, strict=True):
                seq.seq_id = seq_id
                seq.sampler = self._new_sampler(seq.params)
                seq.text = TextAssembler(seq.params.stop)
                seq.loops = LoopWatch() if seq.params.stop_loops else None
            if hit:
                self.cache.attach(hit, seq_ids)
                head.cached = hit.entry
                head.prefix_done = head.reused = reused
            self.running.append(head)
            self.counters.jobs += 1
            queued_ms = (time.monotonic() - head.submitted_at) * 1000.0
            head.emit(JobStarted(head.job_id, head.cost.prompt_tokens, queued_ms))

    def _room_for(self, job: JobState) -> _Room | None:
        """Room to admit ``job`` now (with the cached prefix it reuses), or None.

        Idle cached prefixes are evicted when the job needs their cells.
        """
        if not self.budget.has_slots(job.cost.sequences):
            return None
        hit = self.cache.lookup(job.prefix, job.adapter) if job.prefix else None
        if hit is not None and self.cache.make_room(job.cost.cells - hit.tokens, keep=hit.entry):
            return _Room(hit)
        if self.cache.make_room(job.cost.cells):
            return _Room(None)
        return None

    def _cancel_waiting(self, job: JobState) -> None:
        for seq in job.sequences:
            seq.finished = True
            self.counters.cancellations += 1
            job.emit(self._done_event(job, seq, "cancelled"))
        job.emit(JobDone(job.cost.prompt_tokens, 0))

    # -- cancellation and completion ----------------------------------------------------

    def reap_cancelled(self) -> None:
        """Drop cancelled jobs: running ones leave the batch, waiting ones the queue."""
        for job in [j for j in self.waiting if j.cancelled]:
            self.waiting.remove(job)
            self._cancel_waiting(job)
        for job in list(self.running):
            if job.cancelled:
                for seq in job.live():
                    self._finish(job, seq, "cancelled")

    def _finish(self, job: JobState, seq: SequenceState, reason: FinishReason) -> None:
        seq.finished = True
        seq.pending = None
        if reason != "cancelled":
            tail = seq.text.finish()
            if tail:
                job.emit(TokenDelta(seq.index, tail))
        else:
            self.counters.cancellations += 1
        self.ctx.drop_sequence(seq.seq_id)
        self.budget.release(seq.cells, seq.seq_id)
        if seq.sampler is not None:
            seq.sampler.close()
            seq.sampler = None
        job.emit(self._done_event(job, seq, reason))
        if not job.live():
            # The prefix cells went with the last sequence that referenced them.
            self._release_prefix(job)
            self.running.remove(job)
            job.emit(JobDone(job.cost.prompt_tokens, sum(s.generated for s in job.sequences)))

    def _done_event(self, job: JobState, seq: SequenceState, reason: FinishReason) -> SequenceDone:
        now = time.monotonic()
        ttft = None if seq.first_token_at is None else seq.first_token_at - job.submitted_at
        return SequenceDone(
            seq=seq.index,
            finish_reason=reason,
            text=seq.text.text,
            prompt_tokens=len(seq.suffix),
            completion_tokens=seq.generated,
            logprob_sum=seq.logprob_sum,
            logprob_mean=seq.logprob_sum / seq.generated if seq.generated else 0.0,
            ttft_ms=None if ttft is None else ttft * 1000.0,
            duration_ms=(now - job.submitted_at) * 1000.0,
        )

    def fail_job(self, job: JobState, error: PiceError) -> None:
        """Stop ``job`` with an error event, freeing everything it holds."""
        for seq in job.live():
            seq.finished = True
            self.ctx.drop_sequence(seq.seq_id)
            self.budget.release(seq.cells, seq.seq_id)
            if seq.sampler is not None:
                seq.sampler.close()
                seq.sampler = None
        if job in self.running:
            self._release_prefix(job)
            self.running.remove(job)
        job.emit(JobFailed(error))

    def _release_prefix(self, job: JobState) -> None:
        """Release the prefix cells the job reserved and unpin the cached prefix it reused."""
        self.budget.release(job.cost.prefix_tokens - job.reused)
        if job.cached is not None:
            self.cache.detach(job.cached)
            job.cached = None

    def fail_all(self, error: PiceError) -> None:
        for job in list(self.running):
            self.fail_job(job, error)
        while self.waiting:
            self.waiting.popleft().emit(JobFailed(error))

    # -- one decode step ----------------------------------------------------------------

    def step(self) -> bool:
        """Build a batch per active adapter group, decode it, sample its sequences.

        Returns False when there was nothing to decode.
        """
        started = time.monotonic()
        sampled = 0
        decoded = stopped = False
        for adapter, jobs in self._groups():
            outcome = self._step_group(adapter, jobs)
            if outcome is None:
                continue
            if outcome < 0:  # no KV slot, or a failed decode: this step ends here
                stopped = True
                break
            decoded = True
            sampled += outcome
        if decoded:
            self.counters.decode_steps += 1
            self.throughput.record(started, time.monotonic(), sampled)
        return decoded or stopped

    def _groups(self) -> list[tuple[str | None, list[JobState]]]:
        """The running jobs by adapter, each group in admission order."""
        running = self.running
        first = running[0].adapter if running else None
        if all(job.adapter == first for job in running):
            return [(first, running)]  # the common case: one decode per step
        groups: dict[str | None, list[JobState]] = {}
        for job in running:
            groups.setdefault(job.adapter, []).append(job)
        order = list(groups.items())
        turn = self._turn % len(order)
        self._turn += 1
        return order[turn:] + order[:turn]

    def _step_group(self, adapter: str | None, jobs: list[JobState]) -> int | None:
        """Decode one batch of ``jobs`` (all of ``adapter``) and sample it.

        Returns how many sequences sampled, None when the group had nothing to decode, or -1
        when the decode found no KV slot or failed (its jobs failed then).
        """
        jobs = list(jobs)  # finishing a job removes it from ``running``
        chunks, decoding = self._build_batch(jobs)
        if self.batch.n_tokens == 0:
            return None
        try:
            self.ctx.use_adapter(adapter)
        except PiceError as exc:
            logger.error("Could not select the adapter %s: %s", adapter, exc.message)
            for job in jobs:
                self.fail_job(job, exc)
            return -1
        status = self.ctx.decode(self.batch)
        if status == DECODE_NO_KV_SLOT:
            self._on_no_slot(chunks)
            return -1
        if status != DECODE_OK:
            logger.error(
                "llama_decode failed with status %d; failing the jobs in the batch", status
            )
            error = PiceError("The edge engine failed to decode a batch.")
            in_batch = {id(c.job): c.job for c in chunks} | {id(j): j for j, _ in decoding}
            for job in in_batch.values():
                self.fail_job(job, error)
            return -1
        self._prefill_cap = min(self.n_batch, self._prefill_cap * 2)
        self._commit(chunks)
        return self._sample_all(jobs)

    def _build_batch(
        self, jobs: list[JobState]
    ) -> tuple[list[_Chunk], list[tuple[JobState, SequenceState]]]:
        batch = self.batch
        batch.clear()
        decoding: list[tuple[JobState, SequenceState]] = []
        for job in jobs:
            for seq in job.live():
                seq.logits_row = None
                if seq.pending is not None:
                    seq.logits_row = batch.add(seq.pending, seq.n_past, (seq.seq_id,), logits=True)
                    decoding.append((job, seq))
        room = min(self.n_batch - batch.n_tokens, self._prefill_cap)
        chunks: list[_Chunk] = []
        for job in jobs:
            if room <= 0:
                break
            room -= self._add_prefill(job, room, chunks)
        return chunks, decoding

    def _add_prefill(self, job: JobState, room: int, chunks: list[_Chunk]) -> int:
        """Place up to ``room`` prefill tokens of ``job``; returns how many were placed."""
        batch = self.batch
        live = job.live()
        used = 0
        if not job.prefilled:
            ids = tuple(seq.seq_id for seq in live)
            start = job.prefix_done
            count = min(room, len(job.prefix) - start)
            end = start + count
            for pos in range(start, end):
                last = pos == len(job.prefix) - 1
                row = batch.add(job.prefix[pos], pos, ids, logits=last)
                if last:
                    # Sequences without a suffix sample straight from the prefix's last token.
                    for seq in live:
                        if not seq.suffix:
                            seq.logits_row = row
            chunks.append(_Chunk(job, None, count))
            used += count
            if end < len(job.prefix):
                return used
        prefix_len = len(job.prefix)
        for seq in live:
            if used >= room:
                break
            remaining = len(seq.suffix) - seq.suffix_done
            if remaining <= 0 or seq.pending is not None or seq.generated:
                continue
            count = min(room - used, remaining)
            start = seq.suffix_done
            for k in range(start, start + count):
                last = k == len(seq.suffix) - 1
                row = batch.add(seq.suffix[k], prefix_len + k, (seq.seq_id,), logits=last)
                if last:
                    seq.logits_row = row
            chunks.append(_Chunk(job, seq, count))
            used += count
        return used

    def _commit(self, chunks: list[_Chunk]) -> None:
        for chunk in chunks:
            self.counters.prefill_tokens += chunk.count
            if chunk.seq is None:
                job = chunk.job
                job.prefix_done += chunk.count
                live = job.live()
                if job.prefilled and live:
                    for seq in live:
                        seq.n_past = len(job.prefix)
                    self.cache.store(job.prefix, live[0].seq_id, job.adapter)
            else:
                chunk.seq.suffix_done += chunk.count
                chunk.seq.n_past = len(chunk.job.prefix) + chunk.seq.suffix_done

    def _sample_all(self, jobs: list[JobState]) -> int:
        """Sample the next token of every sequence of ``jobs`` with fresh logits; returns how
        many."""
        sampled = 0
        for job in jobs:
            for seq in job.live():
                row = seq.logits_row
                if row is None:
                    continue
                seq.logits_row = None
                if seq.pending is not None:  # its token was decoded this step
                    seq.pending = None
                    seq.n_past += 1
                self._sample(job, seq, row)
                sampled += 1
        return sampled

    def _sample(self, job: JobState, seq: SequenceState, row: int) -> None:
        assert seq.sampler is not None
        token = seq.sampler.sample(self.ctx.ptr, row)
        if seq.first_token_at is None:
            seq.first_token_at = time.monotonic()
        eog = self.model.is_eog(token)
        if not eog:
            seq.generated += 1
            self.counters.tokens_generated += 1
            logits = self.ctx.logits(row)
            logprob = token_logprob(logits, token)
            seq.logprob_sum += logprob
            piece = self.model.piece(token)
            if seq.params.top_logprobs is not None:
                top = top_logprobs(logits, seq.params.top_logprobs)
                alternatives = tuple(TopLogprob(self.model.piece(t), lp) for t, lp in top)
                job.emit(TokenLogprob(seq.index, piece, logprob, alternatives))
            text = seq.text.feed(piece)
            if text:
                job.emit(TokenDelta(seq.index, text))
                if seq.loops is not None:
                    seq.loops.feed(text)
        reason = finish_reason_for(seq, eog=eog)
        if reason is None:
            seq.pending = token
        else:
            self._finish(job, seq, reason)

    def _on_no_slot(self, chunks: list[_Chunk]) -> None:
        """llama.cpp found no room for the batch; the cache is unchanged, so retry smaller."""
        for job in self.running:
            for seq in job.live():
                seq.logits_row = None
        if self.cache.evict_one():
            logger.warning("No KV slot for a batch; evicted a cached prefix")
            return
        if chunks and self._prefill_cap > 1:
            self._prefill_cap = max(1, self._prefill_cap // 2)
            logger.warning("No KV slot for a batch; prefill budget now %d", self._prefill_cap)
            return
        # Even single tokens do not fit: give up on the newest job so the others go on.
        victim = self.running[-1]
        logger.warning("KV cache exhausted; failing job %s", victim.job_id)
        self.fail_job(
            victim,
            ServiceUnavailableError("The edge's KV cache is full; retry later.", retry_after=1),
        )
