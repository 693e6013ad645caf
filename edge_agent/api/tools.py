"""Tool calling on the llama.cpp engine, the way Qwen2.5 (Hermes-style) models do it.

The offered tools go into the prompt through the model's own chat template (its ``tools``
branch tells the model to answer ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``);
the answer's blocks become OpenAI ``tool_calls``. ``tool_choice``:

- ``"auto"`` (the default when tools are given): the model decides; its text is parsed after.
- ``"required"`` or a named function: a grammar makes the answer one or more tool-call blocks
  whose JSON matches a tool's name and parameter schema (one block when
  ``parallel_tool_calls`` is false).
- ``"none"``: the tools are left out of the prompt and the request is plain chat.

The legacy ``functions``/``function_call`` fields are refused with a 400 naming them.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from pice.errors import InvalidRequestError
from pice.openai_protocol import ChatCompletionRequest, FunctionCall, ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.DOTALL)
# OpenAI's rule for a function's name.
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
# A bare call as small (Coder) models write it: the object alone, or in a ```json fence.
_BARE = re.compile(r"\s*(?:```(?:json)?\s*)?(\{.*\})\s*(?:```)?\s*", re.DOTALL)
_FENCE = "```json"


@dataclass(frozen=True)
class ToolPlan:
    """What a request's tools ask of the prompt and the sampler."""

    tools: tuple[dict[str, Any], ...]  # OpenAI tool objects, as the chat template reads them
    grammar: str | None  # None: the model may answer in text ("auto")
    names: frozenset[str]  # the offered functions' names


def _refuse(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _functions(tools: object) -> list[dict[str, Any]]:
    """The ``function`` object of each tool, checked as OpenAI checks them."""
    if not isinstance(tools, list):
        raise _refuse("'tools' must be a list of tool objects.", "tools")
    functions = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _refuse(f"tools[{i}]: only tools of type 'function' are supported.", "tools")
        if not isinstance(function, dict) or not _NAME.match(str(function.get("name", ""))):
            raise _refuse(
                f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'.", "tools"
            )
        parameters = function.get("parameters", _ANY_OBJECT)
        if not isinstance(parameters, dict):
            raise _refuse(f"tools[{i}].function.parameters must be a JSON schema.", "tools")
        functions.append(function)
    return functions


def _chosen(choice: object, names: list[str]) -> list[str] | None:
    """The functions the answer must call; None when the model may answer in text."""
    if choice == "auto":
        return None
    if choice == "required":
        return names
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(function, dict):
        if function.get("name") in names:
            return [str(function["name"])]
        named = function.get("name")
        raise _refuse(f"tool_choice names {named!r}, not one of the tools.", "tool_choice")
    raise _refuse(
        "tool_choice must be 'none', 'auto', 'required' or "
        '{"type": "function", "function": {"name": …}}.',
        "tool_choice",
    )


def call_grammar(functions: list[dict[str, Any]], parallel: bool) -> str:
    """GBNF for tool-call blocks, each a JSON object ``{"name", "arguments"}`` that matches
    one of ``functions`` (its name, its parameters' schema); one block or several."""
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": function["name"]},
                "arguments": function.get("parameters", _ANY_OBJECT),
            },
            "required": ["name", "arguments"],
        }
        for function in functions
    ]
    schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    converter = SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    try:
        resolved = converter.resolve_refs(schema, "tools")
        converter.visit(resolved, "tool-call-json")  # type: ignore[no-untyped-call]
    except Exception as error:  # the converter raises assertions and key errors on bad input
        message = f"a tool's parameters cannot be turned into a grammar: {error}"
        raise _refuse(message, "tools") from error
    block = f'"{OPEN}\\n" tool-call-json "\\n{CLOSE}"'
    more = f' ("\\n" {block})*' if parallel else ""
    rules: str = converter.format_grammar()  # type: ignore[no-untyped-call]
    return f"root ::= {block}{more}\n{rules}"


def tool_plan(body: ChatCompletionRequest) -> ToolPlan | None:
    """The request's tools, or None when it is plain chat (no tools, or ``tool_choice: none``)."""
    extra = body.model_extra or {}
    if extra.get("functions") and extra.get("function_call") != "none":
        raise InvalidRequestError(
            "'functions' (the deprecated form of tools) is not supported by this server; "
            "send the same definitions as 'tools'.",
            param="functions",
            code="unsupported_parameter",
        )
    tools, choice = extra.get("tools"), extra.get("tool_choice", "auto")
    if not tools:
        if "tool_choice" in extra and choice is not None:
            raise _refuse("'tool_choice' is only allowed when 'tools' are given.", "tool_choice")
        return None
    functions = _functions(tools)
    if choice == "none":
        return None
    chosen = _chosen(choice, [str(f["name"]) for f in functions])
    fmt = body.response_format
    if chosen is not None and fmt is not None and fmt.type != "text":
        raise _refuse(
            "response_format cannot be combined with a required tool call.", "response_format"
        )
    parallel = extra.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise _refuse("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
    grammar = None
    if chosen is not None:
        grammar = call_grammar([f for f in functions if f["name"] in chosen], parallel)
    names = frozenset(str(f["name"]) for f in functions)
    return ToolPlan(tools=tuple(tools), grammar=grammar, names=names)


def _call(value: object, names: frozenset[str] | None) -> ToolCall | None:
    """One ``{"name", "arguments"}`` object as a tool call (``names``: the only names taken)."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    if names is not None and value["name"] not in names:
        return None
    arguments = value.get("arguments", {})
    return ToolCall(
        id=f"call_{uuid.uuid4().hex[:24]}",
        function=FunctionCall(
            name=value["name"],
            arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
        ),
    )


def parse_tool_calls(text: str, names: frozenset[str]) -> tuple[str | None, list[ToolCall]] | None:
    """(content before the calls, the calls) if ``text`` holds tool-call blocks that all parse;
    else None and the text is an ordinary answer (as vLLM's parsers treat a malformed call).

    Small models often drop the tags and answer with the bare object, alone or in a ```json
    fence; an answer that is only ``{"name": <an offered tool>, "arguments": …}`` is taken as
    that call.
    """
    blocks = _BLOCK.findall(text)
    if not blocks:
        bare = _BARE.fullmatch(text)
        try:
            call = _call(json.loads(bare.group(1)), names) if bare else None
        except ValueError:
            return None
        return None if call is None else (None, [call])
    calls = []
    for block in blocks:
        try:
            call = _call(json.loads(block), None)
        except ValueError:
            return None
        if call is None:
            return None
        calls.append(call)
    content = text[: text.index(OPEN)].strip()
    return content or None, calls


class CallStream:
    """A streamed answer's text: what may go out as content now, the rest held for calls.

    Content streams until a tool-call block starts; a tail that could be the start of the
    opening tag is held back until the next delta shows it is not. An answer that opens with
    ``{`` or a ```json fence may be a bare call (``parse_tool_calls``), so it is held whole.
    """

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.text = ""
        self._sent = 0
        self._in_call = False

    def feed(self, delta: str) -> str:
        self.text += delta
        if self._in_call or (self._sent == 0 and _maybe_bare(self.text)):
            return ""
        start = self.text.find(OPEN, self._sent)
        if start >= 0:
            self._in_call = True
            end = start
        else:
            held = next((k for k in range(len(OPEN) - 1, 0, -1) if self.text.endswith(OPEN[:k])), 0)
            end = max(self._sent, len(self.text) - held)
        out, self._sent = self.text[self._sent : end], end
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(content not sent yet, the calls); no calls if the blocks do not parse."""
        parsed = parse_tool_calls(self.text, self.names)
        if parsed is None:
            return self.text[self._sent :], []
        return "", parsed[1]


def _maybe_bare(text: str) -> bool:
    """Could this answer, so far, still be a bare call?"""
    start = text.lstrip()
    return start.startswith(("{", _FENCE)) or _FENCE.startswith(start)
