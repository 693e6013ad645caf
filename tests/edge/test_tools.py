"""Tool calling on the edge engine: the request's plan, the answer's parse, the stream's hold."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge_agent.api.tools import CallStream, parse_tool_calls, tool_plan
from pice.errors import InvalidRequestError
from pice.openai_protocol import ChatCompletionRequest


def tool(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [tool("get_weather", CITY), tool("get_time")]
NAMES = frozenset({"get_weather", "get_time"})


def request(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def grammar(**fields: Any) -> str:
    plan = tool_plan(request(**fields))
    assert plan is not None
    assert plan.grammar is not None
    return plan.grammar


def test_no_tools_or_tool_choice_none_is_plain_chat() -> None:
    assert tool_plan(request()) is None
    assert tool_plan(request(tools=[])) is None
    assert tool_plan(request(tools=TOOLS, tool_choice="none")) is None
    assert tool_plan(request(functions=[{"name": "f"}], function_call="none")) is None


def test_auto_renders_the_tools_and_constrains_nothing() -> None:
    plan = tool_plan(request(tools=TOOLS))
    assert plan is not None
    assert plan.grammar is None
    assert plan.tools == tuple(TOOLS)
    assert plan.names == NAMES


def test_required_allows_every_tool_and_a_named_choice_only_that_one() -> None:
    required = grammar(tools=TOOLS, tool_choice="required")
    assert required.startswith('root ::= "<tool_call>\\n" tool-call-json "\\n</tool_call>"')
    assert '"\\"get_weather\\""' in required
    assert '"\\"get_time\\""' in required
    assert '"\\"city\\""' in required  # the parameters' schema, not any object
    named = grammar(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert '"\\"get_time\\""' in named
    assert "get_weather" not in named


def test_parallel_tool_calls_false_allows_one_block() -> None:
    several = grammar(tools=TOOLS, tool_choice="required")
    one = grammar(tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    assert several.splitlines()[0].endswith(")*")
    assert not one.splitlines()[0].endswith(")*")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": "auto"}, "tool_choice"),  # no tools
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        ({"tools": [{"type": "retrieval"}]}, "tools"),
        ({"tools": [tool("has space")]}, "tools"),
        ({"tools": [tool("f", parameters=[])]}, "tools"),  # type: ignore[arg-type]
        ({"tools": {"f": 1}}, "tools"),
        ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"functions": [{"name": "f"}]}, "functions"),
        (
            {"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
            "response_format",
        ),
    ],
)
def test_bad_tool_requests_are_400s_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        tool_plan(request(**fields))
    assert info.value.param == param


def test_tool_call_blocks_become_calls_with_the_text_before_them_as_content() -> None:
    text = (
        "Let me check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    )
    parsed = parse_tool_calls(text, NAMES)
    assert parsed is not None
    content, calls = parsed
    assert content == "Let me check."
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert calls[1].function.arguments == "{}"
    assert len({c.id for c in calls}) == 2
    assert all(c.id.startswith("call_") and c.type == "function" for c in calls)


@pytest.mark.parametrize(
    "text",
    [
        "Paris is sunny today.",
        "<tool_call>\n{not json}\n</tool_call>",
        '<tool_call>\n{"arguments": {}}\n</tool_call>',  # no name
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',  # cut off
        '{"name": "book_flight", "arguments": {}}',  # a bare object naming no offered tool
        '{"city": "Paris"}',
    ],
)
def test_text_that_is_not_a_whole_call_stays_content(text: str) -> None:
    assert parse_tool_calls(text, NAMES) is None


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '\n```\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```\n',
    ],
)
def test_a_bare_call_to_an_offered_tool_is_a_call(text: str) -> None:
    parsed = parse_tool_calls(text, NAMES)
    assert parsed is not None
    assert parsed[0] is None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in parsed[1]] == [
        ("get_weather", {"city": "Paris"})
    ]


def feed_all(stream: CallStream, deltas: list[str]) -> str:
    return "".join(stream.feed(d) for d in deltas)


def test_a_stream_sends_text_until_the_call_and_holds_a_split_tag() -> None:
    stream = CallStream(NAMES)
    assert stream.feed("Let me ") == "Let me "
    assert stream.feed("check.\n<tool") == "check.\n"  # "<tool" may open a call: held
    assert stream.feed("_call>\n") == ""
    rest = feed_all(stream, ['{"name": "get_time", ', '"arguments": {}}', "\n</tool_call>"])
    assert rest == ""
    unsent, calls = stream.finish()
    assert unsent == ""
    assert [c.function.name for c in calls] == ["get_time"]


def test_a_stream_releases_a_held_tail_that_was_not_a_tag() -> None:
    stream = CallStream(NAMES)
    assert stream.feed("a < b and a <t") == "a < b and a "
    assert stream.feed("c") == "<tc"
    assert stream.finish() == ("", [])


def test_a_stream_holds_an_answer_that_may_be_a_bare_call() -> None:
    bare = CallStream(NAMES)
    sent = feed_all(bare, ["```", "json\n", '{"name": "get_time", "arguments": {}}', "\n```"])
    assert sent == ""
    assert [c.function.name for c in bare.finish()[1]] == ["get_time"]
    # JSON that is not a call is held, then sent whole at the end.
    data = CallStream(NAMES)
    assert feed_all(data, ['{"a":', " 1}"]) == ""
    assert data.finish() == ('{"a": 1}', [])
    # Code in another fence streams as it comes.
    code = CallStream(NAMES)
    assert feed_all(code, ["``", "`python\n", "x = 1"]) == "```python\nx = 1"
