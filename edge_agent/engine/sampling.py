"""Per-sequence token sampling (llama.cpp sampler chains) and log-probabilities.

:class:`TokenSampler` is what the batcher needs of a sampler; the batcher builds one per
sequence through a :data:`SamplerFactory` (by default :class:`Sampler`), which is how the
fake-context tests sample without a llama.cpp context.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import llama_cpp
import numpy as np
import numpy.typing as npt

from edge_agent.engine.types import SamplingParams
from pice.errors import InvalidRequestError

# llama.cpp's "pick a random seed" value.
_RANDOM_SEED = 0xFFFFFFFF
# How many of the last generated tokens the penalties count (-1 would mean the whole context);
# an edge expansion is at most a few hundred tokens, so this covers all of it.
_PENALTY_WINDOW = 1024


class TokenSampler(Protocol):
    """What the batcher needs of a sequence's sampler (:class:`Sampler`, or a test fake)."""

    def sample(self, ctx: Any, index: int) -> int:
        """Pick the next token from batch row ``index``; ``ctx`` is the context's ``ptr``."""
        ...

    def close(self) -> None: ...


# One sampler per sequence, built from its parameters when the sequence is admitted.
SamplerFactory = Callable[[SamplingParams], TokenSampler]


class GrammarError(ValueError):
    """llama.cpp could not parse a GBNF grammar."""


def _grammar_sampler(vocab: Any, grammar: str) -> Any:
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        raise GrammarError("llama.cpp could not parse the grammar")
    return sampler


def check_params(params: Iterable[SamplingParams], *, vocab: Any, n_vocab: int) -> None:
    """Refuse (400) what no sampler could be built from: a logit bias on a token id this model
    does not have, a grammar llama.cpp cannot parse (root rule ``root``). Each distinct grammar
    is parsed once, however many sequences (``n``) share it.

    Reads the vocabulary only, so it is safe off the engine thread: the job is refused before
    it is queued, not failed once it runs.
    """
    params = list(params)
    for token, _ in {pair for p in params for pair in p.logit_bias}:
        if not 0 <= token < n_vocab:
            raise InvalidRequestError(
                f"logit_bias key {token} is not a token id of this model (0 to {n_vocab - 1}).",
                param="logit_bias",
            )
    for grammar, field in {(p.grammar, p.grammar_param) for p in params if p.grammar is not None}:
        try:
            llama_cpp.llama_sampler_free(_grammar_sampler(vocab, grammar))
        except GrammarError as error:
            raise InvalidRequestError(f"{field}: {error}.", param=field) from error


def _logit_bias_sampler(n_vocab: int, bias: tuple[tuple[int, float], ...]) -> Any:
    entries = (llama_cpp.llama_logit_bias * len(bias))(
        *(llama_cpp.llama_logit_bias(token, value) for token, value in bias)
    )
    return llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(bias), entries)


class Sampler:
    """A llama.cpp sampler chain for one sequence: the logit bias (when set), the penalties
    (when set), then greedy, or top-p then temperature; and a grammar beside it (when set).

    The logit bias comes first, as OpenAI applies it to the raw logits. The grammar rules out
    every token that cannot continue text it accepts (``-inf``), so greedy or top-p choose
    among the allowed ones. Checking a grammar against the whole vocabulary (151,936 tokens for
    Qwen2.5) costs more than a small model's decode step, so it is applied the way llama.cpp's
    own ``common_sampler`` applies it: the chain picks a token from the unmasked logits, the
    grammar checks that one token, and only if it is refused is the grammar applied to every
    token and the pick made again. Greedy decoding picks exactly the token the masked chain
    would; with sampling, a refused draw is redrawn from the masked distribution, so the
    accepted token follows it too (top-p's nucleus is taken before the mask on the first draw).
    The picked token is then accepted into the chain and the grammar, which advances its state.

    The penalties sampler sees the logits before temperature and top-p, as OpenAI defines them (a
    logit lowered by ``frequency_penalty * count + presence_penalty * (count > 0)`` for each
    token already generated); it counts only this sequence's generated tokens, because
    ``llama_sampler_sample`` accepts each picked token into the chain and the prompt is never
    fed to it. ``n_vocab`` is what this build's ``llama_sampler_init_penalties`` asks for.
    """

    def __init__(self, params: SamplingParams, *, n_vocab: int = 0, vocab: Any = None) -> None:
        chain: Any = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        if params.logit_bias:
            llama_cpp.llama_sampler_chain_add(
                chain, _logit_bias_sampler(n_vocab, params.logit_bias)
            )
        self._grammar: Any = None
        if params.grammar is not None:
            try:
                self._grammar = _grammar_sampler(vocab, params.grammar)
            except GrammarError:
                llama_cpp.llama_sampler_free(chain)
                raise
            self._candidates = _Candidates(n_vocab)
        if params.presence_penalty or params.frequency_penalty:
            llama_cpp.llama_sampler_chain_add(
                chain,
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    _PENALTY_WINDOW,
                    1.0,  # llama.cpp's repeat penalty, not an OpenAI field: off
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )
        if params.temperature <= 0.0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            if params.top_p < 1.0:
                llama_cpp.llama_sampler_chain_add(
                    chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1)
                )
            llama_cpp.llama_sampler_chain_add(
                chain, llama_cpp.llama_sampler_init_temp(params.temperature)
            )
            seed = _RANDOM_SEED if params.seed is None else params.seed & 0xFFFFFFFF
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
        self._chain: Any = chain

    def sample(self, ctx: Any, index: int) -> int:
        """Pick the next token from batch row ``index`` of the last decode."""
        if self._grammar is None:
            return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        return self.sample_logits(llama_cpp.llama_get_logits_ith(ctx, index))

    def sample_logits(self, logits: Any) -> int:
        """Pick the next token from a row of raw logits (a pointer to ``n_vocab`` floats)."""
        assert self._grammar is not None, "without a grammar, llama_sampler_sample picks"
        token = self._candidates.pick(self._chain, logits)
        if not self._allows(token):
            token = self._candidates.pick(self._chain, logits, mask=self._grammar)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def _allows(self, token: int) -> bool:
        single = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 1.0, 0.0))
        one = llama_cpp.llama_token_data_array(single, 1, -1, False)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(one))
        return bool(np.isfinite(single[0].logit))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None


class _Candidates:
    """The whole vocabulary as llama.cpp's candidate array, refilled from a row's logits."""

    _DTYPE = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

    def __init__(self, n_vocab: int) -> None:
        assert self._DTYPE.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)
        self._n_vocab = n_vocab
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._data = np.zeros(n_vocab, dtype=self._DTYPE)
        self._pointer = self._data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))

    def pick(self, chain: Any, logits: Any, mask: Any = None) -> int:
        """The token ``chain`` selects from the raw logits (after ``mask``, if given)."""
        # The samplers sort and cut the array in place: every pick starts from a fresh copy.
        self._data["id"] = self._ids
        self._data["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        self._data["p"] = 0.0
        array = llama_cpp.llama_token_data_array(self._pointer, self._n_vocab, -1, False)
        if mask is not None:
            llama_cpp.llama_sampler_apply(mask, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        return int(array.data[array.selected].id)


def log_normaliser(logits: npt.NDArray[np.float32]) -> float:
    """log sum exp(logits): what turns a logit into a log-probability."""
    peak = float(logits.max())
    return peak + float(np.log(np.exp(logits - peak, dtype=np.float32).sum(dtype=np.float64)))


def token_logprob(logits: npt.NDArray[np.float32], token: int) -> float:
    """log softmax(logits)[token] under the raw distribution (before temperature/top-p)."""
    return float(logits[token]) - log_normaliser(logits)


def top_logprobs(logits: npt.NDArray[np.float32], k: int) -> list[tuple[int, float]]:
    """The ``k`` most likely tokens and their log-probabilities, most likely first."""
    if k <= 0:
        return []
    k = min(k, logits.shape[0])
    log_z = log_normaliser(logits)
    best = np.argpartition(-logits, k - 1)[:k]
    ranked = best[np.argsort(-logits[best], kind="stable")]
    return [(int(t), float(logits[t]) - log_z) for t in ranked]
