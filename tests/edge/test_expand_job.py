"""How ``/v1/expand`` turns a request into sequences: labels, seeds and per-candidate sampling."""

from __future__ import annotations

from typing import Any

from edge_agent.api.chat import build_job as chat_job
from edge_agent.api.expand import build_job
from pice.edge_protocol import ExpandRequest
from pice.openai_protocol import ChatCompletionRequest


def request(**fields: Any) -> ExpandRequest:
    return ExpandRequest.model_validate({"question": "q", "sketch": ["a", "b"]} | fields)


def test_candidate_zero_keeps_the_requests_sampling_and_the_others_use_the_ensembles() -> None:
    spec, labels = build_job(
        request(candidates=3, candidate_temperature=0.7, seed=5), "prefix", add_special=False
    )
    assert labels == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    temperatures = [s.params.temperature for s in spec.sequences]
    assert temperatures == [0.0, 0.7, 0.7, 0.0, 0.7, 0.7]
    assert [s.params.seed for s in spec.sequences] == [5, 6, 7, 1005, 1006, 1007]


def test_without_candidate_temperature_every_candidate_decodes_as_before() -> None:
    spec, _ = build_job(request(candidates=2, temperature=0.3), "prefix", add_special=False)
    assert [s.params.temperature for s in spec.sequences] == [0.3] * 4
    assert [s.params.seed for s in spec.sequences] == [None] * 4
    # A gateway that never sets the field sends the same body as before it existed.
    assert "candidate_temperature" not in request(candidates=2).wire()


def test_penalties_reach_every_sequence_and_default_to_off() -> None:
    spec, _ = build_job(
        request(candidates=2, presence_penalty=0.5, frequency_penalty=-1.0),
        "prefix",
        add_special=False,
    )
    assert {(s.params.presence_penalty, s.params.frequency_penalty) for s in spec.sequences} == {
        (0.5, -1.0)
    }
    plain, _ = build_job(request(), "prefix", add_special=False)
    assert {(s.params.presence_penalty, s.params.frequency_penalty) for s in plain.sequences} == {
        (0.0, 0.0)
    }


def test_every_expansion_stops_at_a_loop_and_a_chat_completion_does_not() -> None:
    spec, _ = build_job(request(candidates=2), "prefix", add_special=False)
    assert {s.params.stop_loops for s in spec.sequences} == {True}
    # The OpenAI endpoint decodes as asked: a client's text is never cut short by a heuristic.
    chat = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "q"}], "n": 2}
    )
    assert {s.params.stop_loops for s in chat_job(chat, "prefix", False).sequences} == {False}
