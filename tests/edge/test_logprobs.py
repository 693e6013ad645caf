"""Per-token log-probabilities (OpenAI ``logprobs`` / ``top_logprobs``) from the engine."""

from __future__ import annotations

import math

import numpy as np

from edge_agent.engine import SamplingParams, SequenceSpec, TokenDelta, TokenLogprob
from edge_agent.engine.sampling import token_logprob, top_logprobs
from tests.edge import test_batcher_fake
from tests.edge.fake_llama import N_VOCAB
from tests.edge.test_batcher_fake import MakeRig

# The batcher tests' rig (a fake llama.cpp context), shared as a fixture of this module too.
make_rig = test_batcher_fake.make_rig


def test_top_logprobs_ranks_the_most_likely_tokens_with_normalised_logprobs() -> None:
    logits = np.array([0.0, 3.0, 1.0, 3.5, -2.0], dtype=np.float32)
    top = top_logprobs(logits, 3)
    assert [t for t, _ in top] == [3, 1, 2]
    assert [lp for _, lp in top] == sorted((lp for _, lp in top), reverse=True)
    assert math.isclose(sum(math.exp(lp) for _, lp in top_logprobs(logits, 5)), 1.0, rel_tol=1e-5)
    assert math.isclose(top[0][1], token_logprob(logits, 3), rel_tol=1e-6)
    assert top_logprobs(logits, 0) == []
    assert len(top_logprobs(logits, 20)) == 5  # no more than the vocabulary


def test_a_sequence_that_asks_gets_one_entry_per_token_before_its_text(make_rig: MakeRig) -> None:
    rig = make_rig()
    asks = SequenceSpec("say:hi|", SamplingParams(max_tokens=8, top_logprobs=2))
    plain = SequenceSpec("say:yo|", SamplingParams(max_tokens=8))
    job = rig.submit("", asks, plain)
    rig.run()
    entries = [e for e in job.of(TokenLogprob) if e.seq == 0]
    assert [e.token for e in entries] == [b"h", b"i"]
    assert not [e for e in job.of(TokenLogprob) if e.seq == 1]
    # The fake puts logit 8 on the token it means and 0 on the other 257.
    chosen = math.log(math.exp(8) / (math.exp(8) + N_VOCAB - 1))
    for entry in entries:
        assert math.isclose(entry.logprob, chosen, rel_tol=1e-5)
        assert len(entry.top) == 2
        assert entry.top[0].token == entry.token  # greedy picks the most likely
        assert entry.top[1].logprob < entry.top[0].logprob
    # Each token's entry comes before the text it makes.
    seq0 = [type(e) for e in job.events if isinstance(e, TokenLogprob | TokenDelta) and e.seq == 0]
    assert seq0 == [TokenLogprob, TokenDelta, TokenLogprob, TokenDelta]
    assert job.texts() == ["hi", "yo"]
    rig.assert_idle()
