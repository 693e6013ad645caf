"""A chat request's sampling constraints: response_format as a grammar, logit_bias."""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.api.constraints import logit_bias, response_grammar
from pice.errors import InvalidRequestError
from pice.openai_protocol import ChatCompletionRequest


def request(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_plain_text_needs_no_grammar() -> None:
    assert response_grammar(request()) is None
    assert response_grammar(request(response_format={"type": "text"})) is None


def test_json_mode_is_an_object_grammar_and_a_schema_names_its_keys() -> None:
    json_mode = response_grammar(request(response_format={"type": "json_object"}))
    assert json_mode is not None
    assert "root ::= object" in json_mode
    schema = {"type": "object", "properties": {"zip": {"type": "integer"}}, "required": ["zip"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    keyed = response_grammar(request(response_format=fmt))
    assert keyed is not None
    assert '"\\"zip\\""' in keyed
    assert "root ::= object" not in keyed
    # No schema given: any JSON object, as in JSON mode.
    bare = {"type": "json_schema", "json_schema": {"name": "a"}}
    assert response_grammar(request(response_format=bare)) == json_mode


def test_a_schema_that_cannot_become_a_grammar_is_a_400() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "nope"}}}
    with pytest.raises(InvalidRequestError) as info:
        response_grammar(request(response_format=fmt))
    assert info.value.param == "response_format"


def test_logit_bias_keys_are_token_ids() -> None:
    assert logit_bias(request()) == ()
    assert logit_bias(request(logit_bias={"7": 1.5, "3": -100})) == ((3, -100.0), (7, 1.5))
    with pytest.raises(InvalidRequestError) as info:
        logit_bias(request(logit_bias={"-1": 1}))
    assert info.value.param == "logit_bias"
