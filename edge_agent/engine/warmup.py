"""A small batched decode before an engine reports ready, so a broken kernel fails loudly.

The shapes are the ones real traffic uses: several sequences over one shared prefix (its
tokens carry every sequence id in a unified KV cache), each with a suffix of its own, a
prefill long enough for llama.cpp's matrix-matrix kernels, then a few steps of multi-sequence
decoding. A CPU kernel that crashes (llama.cpp's AMX path segfaulted on the first decode) then
kills the process during start-up, before ``/ready`` ever says yes, where the supervisor and
the orchestrator see it, instead of on the first user request; a decode that fails without
crashing raises :class:`~pice.errors.ModelProvisioningError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge_agent.engine.batcher import Batcher
from edge_agent.engine.job import build_job
from edge_agent.engine.types import EngineEvent, JobDone, JobFailed, JobSpec, SamplingParams
from edge_agent.engine.types import SequenceSpec as Seq
from pice.errors import ModelProvisioningError

# About 60 tokens: past the size where llama.cpp switches from vector to matrix kernels.
_PREFIX = (
    "Warm-up. The edge agent checks that batched decoding works on this CPU before it serves "
    "requests: a shared prefix, prefilled once for every sequence, then one short suffix per "
    "sequence, then a few tokens of greedy decoding in one batch. Continue each line:\n"
)
_MAX_STEPS = 10_000


@dataclass(frozen=True)
class WarmupReport:
    sequences: int
    prefix_tokens: int
    generated_tokens: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.sequences} sequences over a {self.prefix_tokens}-token shared prefix, "
            f"{self.generated_tokens} tokens in {self.seconds:.2f}s"
        )


def warm_up(
    batcher: Batcher, sequences: int, max_tokens: int = 4, adapter: str | None = None
) -> WarmupReport:
    """Run one batched job to completion on ``batcher`` (on the calling thread), under the
    named ``adapter`` if given."""
    sequences = max(1, min(sequences, batcher.budget.max_sequences))
    events: list[EngineEvent] = []
    spec = JobSpec(
        _PREFIX,
        tuple(Seq(f"{i + 1}.", SamplingParams(max_tokens=max_tokens)) for i in range(sequences)),
        adapter=adapter,
    )
    job = build_job(batcher.model, batcher.budget, spec, events.append)
    started = time.monotonic()
    batcher.enqueue(job)
    steps = 0
    while batcher.busy and steps < _MAX_STEPS:
        batcher.admit()
        batcher.step()
        steps += 1
    failed = [e for e in events if isinstance(e, JobFailed)]
    done = [e for e in events if isinstance(e, JobDone)]
    if failed or not done:
        reason = failed[0].error.message if failed else "the job did not finish"
        raise ModelProvisioningError(f"The warm-up decode failed: {reason}")
    return WarmupReport(
        sequences=sequences,
        prefix_tokens=len(job.prefix),
        generated_tokens=done[0].completion_tokens,
        seconds=time.monotonic() - started,
    )
