"""What goes into the engine (jobs of sequences) and what comes out (events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pice.errors import PiceError

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence samples and when it stops."""

    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    # OpenAI's penalties over the sequence's generated tokens (0 = off).
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    max_tokens: int = 96
    stop: tuple[str, ...] = ()
    # OpenAI's ``logprobs``/``top_logprobs``: None records nothing per token; k >= 0 emits a
    # :class:`TokenLogprob` for every generated token with its k most likely alternatives.
    top_logprobs: int | None = None
    # Stop as soon as the text ends in a loop (``pice.loops``: a phrase four times in a row, a
    # word eight), with ``finish_reason: "stop"``, instead of decoding it to ``max_tokens``.
    stop_loops: bool = False
    # A GBNF grammar the text must follow (OpenAI's ``response_format``: JSON, a JSON schema),
    # or None; tokens it rules out are never sampled, and the sequence ends when it is complete.
    grammar: str | None = None
    # The request field the grammar came from (``response_format``, or ``tools`` for a required
    # tool call), named in the 400 when llama.cpp cannot parse it.
    grammar_param: str = "response_format"
    # OpenAI's ``logit_bias``: (token id, bias added to its logit) before anything else samples.
    logit_bias: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class SequenceSpec:
    """One sequence of a job: its own suffix after the shared prefix, and how it samples.

    An empty suffix makes the sequence sample from the logits of the prefix's last token, which
    is how ``n > 1`` chat completions share one prompt.
    """

    suffix: str = ""
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass(frozen=True)
class JobSpec:
    """One shared prefix, prefilled once, and the sequences that continue it."""

    prefix: str
    sequences: tuple[SequenceSpec, ...]
    request_id: str | None = None
    # Let the tokenizer add BOS: False when a chat template already wrote its own.
    add_special: bool = False
    # The named LoRA adapter (``--lora-module NAME=...``) to decode this job with; None: the
    # base model (with the context-wide ``--lora``, if any).
    adapter: str | None = None


@dataclass(frozen=True)
class JobStarted:
    """The job was admitted: its KV cells are reserved and it has joined the batch."""

    job_id: str
    prompt_tokens: int  # prefix once + every suffix
    queued_ms: float


@dataclass(frozen=True)
class TokenDelta:
    """New text of one sequence (stop strings already held back or removed)."""

    seq: int
    text: str


@dataclass(frozen=True)
class TopLogprob:
    token: bytes
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token of a sequence that asked for log-probabilities (before its text).

    Log-probabilities are of the model's raw distribution (before temperature and top-p), as
    OpenAI reports them. Every generated token is reported, also those of a stop string that
    the text leaves out.
    """

    seq: int
    token: bytes
    logprob: float
    top: tuple[TopLogprob, ...]


@dataclass(frozen=True)
class SequenceDone:
    seq: int
    finish_reason: FinishReason
    text: str
    prompt_tokens: int  # this sequence's own suffix
    completion_tokens: int
    logprob_sum: float
    logprob_mean: float
    ttft_ms: float | None
    duration_ms: float


@dataclass(frozen=True)
class JobDone:
    """Every sequence of the job has finished; the last event of a job."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class JobFailed:
    """The job could not run (or stopped running); the last event of a job."""

    error: PiceError


EngineEvent = JobStarted | TokenLogprob | TokenDelta | SequenceDone | JobDone | JobFailed
