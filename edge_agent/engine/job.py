"""Runtime state of a job and its sequences while the engine thread works on them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from edge_agent.engine.admission import CellBudget, JobCost
from edge_agent.engine.prefix_cache import CachedPrefix
from edge_agent.engine.sampling import TokenSampler
from edge_agent.engine.text import TextAssembler
from edge_agent.engine.types import EngineEvent, FinishReason, JobSpec, SamplingParams
from pice.errors import InvalidRequestError
from pice.loops import LoopWatch

Emit = Callable[[EngineEvent], None]


class Tokenizer(Protocol):
    """What :func:`build_job` needs of a model (``LlamaModel``)."""

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]: ...


@dataclass(eq=False)
class SequenceState:
    index: int  # within the job
    suffix: list[int]
    params: SamplingParams
    cells: int  # reserved for this sequence: suffix + max_tokens
    seq_id: int = -1  # llama.cpp sequence id, set on admission
    suffix_done: int = 0  # suffix tokens already prefilled
    n_past: int = 0  # next position of this sequence
    pending: int | None = None  # sampled token to feed at the next step
    logits_row: int | None = None  # batch row to sample from after this step
    generated: int = 0
    logprob_sum: float = 0.0
    first_token_at: float | None = None
    finished: bool = False
    sampler: TokenSampler | None = None
    text: TextAssembler = field(default_factory=lambda: TextAssembler(()))
    loops: LoopWatch | None = None  # set on admission when ``params.stop_loops``

    @property
    def max_tokens(self) -> int:
        return self.params.max_tokens


@dataclass(eq=False)
class JobState:
    job_id: str
    prefix: list[int]
    sequences: list[SequenceState]
    cost: JobCost
    emit: Emit
    request_id: str | None = None
    adapter: str | None = None  # the named LoRA adapter its decodes run under (None: base)
    submitted_at: float = field(default_factory=time.monotonic)
    prefix_done: int = 0  # prefix tokens already prefilled (once, for every sequence)
    reused: int = 0  # leading prefix tokens taken from the prefix cache, never prefilled
    cached: CachedPrefix | None = None  # the cache entry they came from, pinned while running
    # Set from any thread (a plain bool store is atomic under the GIL); read by the engine.
    cancelled: bool = False

    def live(self) -> list[SequenceState]:
        return [s for s in self.sequences if not s.finished]

    @property
    def prefilled(self) -> bool:
        return self.prefix_done >= len(self.prefix)


def finish_reason_for(seq: SequenceState, *, eog: bool) -> FinishReason | None:
    """Why ``seq`` stops after its latest token, or None when it goes on."""
    if eog or seq.text.stopped or (seq.loops is not None and seq.loops.looping):
        return "stop"
    if seq.generated >= seq.max_tokens:
        return "length"
    return None


def build_job(model: Tokenizer, budget: CellBudget, spec: JobSpec, emit: Emit) -> JobState:
    """Tokenise ``spec`` and cost it against ``budget``: the job as the batcher runs it.

    A job that can never fit is refused here, before any byte is sent
    (ContextOverflowError); ``max_tokens`` is clamped when only the prompt fits.
    """
    if not spec.sequences:
        raise InvalidRequestError("A job needs at least one sequence.")
    prefix = model.tokenize(spec.prefix, add_special=spec.add_special, parse_special=True)
    suffixes = [
        model.tokenize(s.suffix, add_special=False, parse_special=False) if s.suffix else []
        for s in spec.sequences
    ]
    if not prefix and not all(suffixes):
        raise InvalidRequestError("The prompt is empty.", param="messages")
    cost = budget.fit(
        JobCost(
            len(prefix),
            tuple(len(s) for s in suffixes),
            tuple(s.params.max_tokens for s in spec.sequences),
        )
    )
    sequences = [
        SequenceState(
            index=i,
            suffix=suffix,
            params=_with_max_tokens(seq.params, cost.max_tokens[i]),
            cells=cost.sequence_cells(i),
        )
        for i, (seq, suffix) in enumerate(zip(spec.sequences, suffixes, strict=True))
    ]
    return JobState(
        job_id=f"job-{uuid.uuid4().hex[:16]}",
        prefix=prefix,
        sequences=sequences,
        cost=cost,
        emit=emit,
        request_id=spec.request_id,
        adapter=spec.adapter,
    )


def _with_max_tokens(params: SamplingParams, max_tokens: int) -> SamplingParams:
    return params if params.max_tokens == max_tokens else replace(params, max_tokens=max_tokens)
