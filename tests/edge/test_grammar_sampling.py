"""The grammar-first sampler picks what the grammar-masked chain would, much cheaper.

The real vocabulary and llama.cpp's grammar sampler, with synthetic logits: at every step the
reference (the grammar applied to the whole vocabulary, then greedy: the chain as it was built
before) and :class:`Sampler` see the same row.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from edge_agent.engine.llama import LlamaModel
from edge_agent.engine.sampling import Sampler, _grammar_sampler, check_params
from edge_agent.engine.types import SamplingParams
from pice.errors import InvalidRequestError

pytestmark = pytest.mark.model

# Closed choices keep a random walk short (a free string ends only when '"' is drawn).
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Lyon", "Marseille"]},
        "sunny": {"type": "boolean"},
        "year": {"type": "integer"},
    },
    "required": ["city", "sunny", "year"],
}
GRAMMAR = str(json_schema_to_gbnf(json.dumps(SCHEMA)))


@pytest.fixture(scope="module")
def model(small_model_path: Path) -> LlamaModel:
    return LlamaModel(small_model_path)


class Reference:
    """The grammar in the chain, over every token, then greedy."""

    def __init__(self, model: LlamaModel) -> None:
        self.chain: Any = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        llama_cpp.llama_sampler_chain_add(self.chain, _grammar_sampler(model.vocab, GRAMMAR))
        llama_cpp.llama_sampler_chain_add(self.chain, llama_cpp.llama_sampler_init_greedy())
        self.n_vocab = model.n_vocab

    def pick(self, logits: np.ndarray[Any, Any]) -> int:
        data = (llama_cpp.llama_token_data * self.n_vocab)()
        view = np.frombuffer(data, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        view["id"], view["logit"] = np.arange(self.n_vocab), logits
        array = llama_cpp.llama_token_data_array(data, self.n_vocab, -1, False)
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self.chain, token)

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.chain)


def rows(model: LlamaModel, seed: int) -> Iterator[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    while True:
        yield rng.normal(0.0, 3.0, model.n_vocab).astype(np.float32)


def pointer(row: np.ndarray[Any, Any]) -> Any:
    return row.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_picks_equal_the_masked_chains_on_both_paths(model: LlamaModel, seed: int) -> None:
    reference = Reference(model)
    sampler = Sampler(SamplingParams(temperature=0.0), n_vocab=model.n_vocab, vocab=model.vocab)
    sampler_with = Sampler(
        SamplingParams(temperature=0.0, grammar=GRAMMAR), n_vocab=model.n_vocab, vocab=model.vocab
    )
    fast = slow = 0
    pieces: list[bytes] = []
    try:
        for step, row in enumerate(rows(model, seed)):
            expected = reference.pick(row)
            if step % 2 == 0:  # half the steps: the allowed token is also the unmasked best
                row[expected] = row.max() + 1.0
                fast += 1
            else:
                slow += int(int(np.argmax(row)) != expected)
            got = sampler_with.sample_logits(pointer(row))
            assert got == expected, f"step {step}"
            reference.accept(got)
            if model.is_eog(got) or step > 200:
                break
            pieces.append(model.piece(got))
    finally:
        reference.close()
        sampler.close()
        sampler_with.close()
    assert fast >= 3
    assert slow >= 3  # steps where the unmasked best was refused and the grammar had to mask
    answer = json.loads(b"".join(pieces).decode())
    assert sorted(answer) == ["city", "sunny", "year"]
    assert answer["city"] in ("Paris", "Lyon", "Marseille")
    assert isinstance(answer["year"], int)


def test_sampled_tokens_are_always_allowed_by_the_grammar(model: LlamaModel) -> None:
    params = SamplingParams(temperature=0.8, top_p=0.95, seed=7, grammar=GRAMMAR)
    sampler = Sampler(params, n_vocab=model.n_vocab, vocab=model.vocab)
    checker = _grammar_sampler(model.vocab, GRAMMAR)
    pieces: list[bytes] = []
    try:
        for step, row in enumerate(rows(model, 5)):
            token = sampler.sample_logits(pointer(row))
            one = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 1.0, 0.0))
            array = llama_cpp.llama_token_data_array(one, 1, -1, False)
            llama_cpp.llama_sampler_apply(checker, ctypes.byref(array))
            assert np.isfinite(one[0].logit), f"step {step}: token {token} refused"
            llama_cpp.llama_sampler_accept(checker, token)
            if model.is_eog(token) or step > 200:
                break
            pieces.append(model.piece(token))
    finally:
        sampler.close()
        llama_cpp.llama_sampler_free(checker)
    assert isinstance(json.loads(b"".join(pieces).decode()), dict)


@pytest.mark.parametrize("field", ["response_format", "tools"])
def test_a_grammar_llama_cpp_cannot_parse_is_a_400_naming_its_field(
    model: LlamaModel, field: str
) -> None:
    broken = SamplingParams(grammar="root ::= (", grammar_param=field)
    with pytest.raises(InvalidRequestError) as info:
        check_params([broken], vocab=model.vocab, n_vocab=model.n_vocab)
    assert info.value.param == field
    assert str(info.value).startswith(f"{field}: ")
    # A grammar it can parse passes.
    check_params([SamplingParams(grammar=GRAMMAR)], vocab=model.vocab, n_vocab=model.n_vocab)
