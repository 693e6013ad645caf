"""A batched llama.cpp engine: continuous batching over many sequences of one model.

``types`` (jobs in, events out) · ``backend`` (what the HTTP layer needs of an engine)
· ``llama`` (the ctypes layer) · ``admission`` (KV budget) · ``batcher`` (one decode step)
· ``engine`` (thread + asyncio handles) · ``sampling``, ``text``, ``chat_template``,
``stats``, ``metrics``.
"""

from edge_agent.engine.types import (
    EngineEvent,
    FinishReason,
    JobDone,
    JobFailed,
    JobSpec,
    JobStarted,
    SamplingParams,
    SequenceDone,
    SequenceSpec,
    TokenDelta,
    TokenLogprob,
)

__all__ = [
    "EngineEvent",
    "FinishReason",
    "JobDone",
    "JobFailed",
    "JobSpec",
    "JobStarted",
    "SamplingParams",
    "SequenceDone",
    "SequenceSpec",
    "TokenDelta",
    "TokenLogprob",
]
