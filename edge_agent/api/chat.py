"""``POST /v1/chat/completions``: OpenAI-compatible, served by the same batched engine.

Concurrent requests share the decode batch; ``n > 1`` is one job of ``n`` sequences over one
prefilled prompt (each samples from the prompt's last logits). ``response_format`` (JSON mode,
a JSON schema) and ``logit_bias`` are honoured by the sampler (``api.constraints``); tools
through the model's chat template and tool-call blocks (``api.tools``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from edge_agent.api.constraints import logit_bias, response_grammar
from edge_agent.api.state import check_model, edge_state, ready_engine
from edge_agent.api.tools import CallStream, ToolPlan, parse_tool_calls, tool_plan
from edge_agent.engine import (
    JobDone,
    JobFailed,
    JobSpec,
    SamplingParams,
    SequenceDone,
    SequenceSpec,
    TokenDelta,
    TokenLogprob,
)
from edge_agent.engine.backend import EngineJob
from edge_agent.engine.chat_template import Message
from pice.errors import InvalidRequestError
from pice.http.disconnect import until_disconnect
from pice.http.sse import Event, sse_done, sse_error, sse_json, sse_response
from pice.openai_protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    LogprobToken,
    ResponseMessage,
    ToolCallChunk,
    ToolCallDelta,
    ToolCallMessage,
    Usage,
    completion_id,
    dump,
    logprob_token,
    now,
)

router = APIRouter()

# OpenAI's default is "until the context is full"; a job reserves its cells up front, so an
# unbounded default would let one request block every other. Clients that want more ask.
DEFAULT_MAX_TOKENS = 512
# OpenAI's defaults.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0


def build_job(
    body: ChatCompletionRequest,
    prefix: str,
    add_special: bool,
    adapter: str | None = None,
    tools: ToolPlan | None = None,
) -> JobSpec:
    limit = body.token_limit() or DEFAULT_MAX_TOKENS
    bias = logit_bias(body)
    tool_grammar = tools.grammar if tools is not None else None
    grammar = tool_grammar or response_grammar(body)
    temperature = DEFAULT_TEMPERATURE if body.temperature is None else body.temperature
    top_p = DEFAULT_TOP_P if body.top_p is None else body.top_p
    sequences = tuple(
        SequenceSpec(
            "",
            SamplingParams(
                temperature=temperature,
                top_p=top_p,
                seed=None if body.seed is None else body.seed + i,
                presence_penalty=body.presence_penalty or 0.0,
                frequency_penalty=body.frequency_penalty or 0.0,
                max_tokens=limit,
                stop=tuple(body.stop_list()),
                top_logprobs=(body.top_logprobs or 0) if body.logprobs else None,
                grammar=grammar,
                grammar_param="tools" if tool_grammar else "response_format",
                logit_bias=bias,
            ),
        )
        for i in range(body.n)
    )
    return JobSpec(
        prefix, sequences, request_id=body.user, add_special=add_special, adapter=adapter
    )


def _entry(event: TokenLogprob) -> LogprobToken:
    return logprob_token(event.token, event.logprob, [(t.token, t.logprob) for t in event.top])


def _history_call(call: Any, param: str) -> dict[str, Any]:
    """An earlier assistant turn's tool call, its arguments as an object for the template."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequestError(f"{param} must be a tool call with a function name.", param=param)
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # not JSON: the template writes the text as is
            arguments = json.loads(arguments)
    return {**call, "function": {**function, "arguments": arguments}}


def _messages(body: ChatCompletionRequest) -> list[Message]:
    role = {"developer": "system"}
    messages = []
    for i, m in enumerate(body.messages):
        calls = (m.model_extra or {}).get("tool_calls") or []
        param = f"messages[{i}].tool_calls"
        if not isinstance(calls, list):
            raise InvalidRequestError("tool_calls must be a list.", param=param)
        history = tuple(_history_call(c, param) for c in calls)
        messages.append(Message(role.get(m.role, m.role), m.text(), history))
    return messages


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    state = edge_state(request)
    # A named adapter's name (--lora-module) decodes this request with that adapter.
    adapter = check_model(state, body.model)
    tools = tool_plan(body)
    engine = ready_engine(request)
    if tools is not None and not engine.chat.has_template:
        raise InvalidRequestError(
            "'tools' need a chat template and this model has none.",
            param="tools",
            code="unsupported_parameter",
        )
    prompt = engine.chat.render(_messages(body), tools.tools if tools else ())
    handle = engine.submit(build_job(body, prompt.text, prompt.add_special, adapter, tools))
    # Answers name the model that wrote them: the module when one was asked for.
    model_id = state.model_id if adapter is None else adapter
    if body.stream:
        return sse_response(_stream(handle, body, model_id, tools), on_close=handle.cancel)
    completion = await until_disconnect(request, _collect(handle, body, model_id, tools))
    return JSONResponse(dump(completion))


def _message(
    text: str, reason: str | None, tools: ToolPlan | None
) -> tuple[ResponseMessage | ToolCallMessage, str | None]:
    """The answer's message and finish reason: tool calls when the text holds them."""
    parsed = parse_tool_calls(text, tools.names) if tools is not None else None
    if parsed is None:
        return ResponseMessage(content=text), reason
    content, calls = parsed
    return ToolCallMessage(content=content, tool_calls=calls), _calls_reason(reason)


def _calls_reason(reason: str | None) -> str | None:
    """An answer that called tools finishes with ``tool_calls``, unless its budget ran out."""
    return reason if reason == "length" else "tool_calls"


async def _collect(
    handle: EngineJob, body: ChatCompletionRequest, model_id: str, tools: ToolPlan | None
) -> ChatCompletion:
    texts = [""] * body.n
    reasons: list[str | None] = [None] * body.n
    logprobs: list[list[LogprobToken]] = [[] for _ in range(body.n)]
    usage = Usage()
    async with handle:
        async for event in handle:
            if isinstance(event, TokenLogprob):
                logprobs[event.seq].append(_entry(event))
            elif isinstance(event, SequenceDone):
                texts[event.seq] = event.text
                reasons[event.seq] = event.finish_reason
            elif isinstance(event, JobDone):
                usage = Usage.of(event.prompt_tokens, event.completion_tokens)
            elif isinstance(event, JobFailed):
                raise event.error
    answers = [_message(texts[i], reasons[i], tools) for i in range(body.n)]
    return ChatCompletion(
        id=completion_id(),
        created=now(),
        model=model_id,
        choices=[
            Choice(
                index=i,
                message=message,
                finish_reason=reason,
                logprobs=ChoiceLogprobs(content=logprobs[i]) if body.logprobs else None,
            )
            for i, (message, reason) in enumerate(answers)
        ],
        usage=usage,
    )


async def _stream(
    handle: EngineJob, body: ChatCompletionRequest, model_id: str, tools: ToolPlan | None
) -> AsyncIterator[Event]:
    cid, created = completion_id(), now()

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> bytes:
        return sse_json(
            dump(
                ChatCompletionChunk(
                    id=cid, created=created, model=model_id, choices=choices, usage=usage
                )
            )
        )

    # A token's log-probability goes out with the chunk that carries its text; text held back
    # (a possible stop string) takes its tokens' entries along, the last chunk any left over.
    pending: list[list[LogprobToken]] = [[] for _ in range(body.n)]

    def take(seq: int) -> ChoiceLogprobs | None:
        if not body.logprobs:
            return None
        entries, pending[seq] = pending[seq], []
        return ChoiceLogprobs(content=entries)

    # With tools, content streams until a tool call starts; the calls go out whole at the end.
    calls = [CallStream(tools.names) for _ in range(body.n)] if tools is not None else None
    for i in range(body.n):
        yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
    async with handle:  # leaving early (client gone) cancels the job's sequences
        async for event in handle:
            if isinstance(event, TokenLogprob):
                pending[event.seq].append(_entry(event))
            elif isinstance(event, TokenDelta):
                text = calls[event.seq].feed(event.text) if calls else event.text
                if text:
                    delta = Delta(content=text)
                    yield chunk(
                        [ChunkChoice(index=event.seq, delta=delta, logprobs=take(event.seq))]
                    )
            elif isinstance(event, SequenceDone):
                reason: str | None = event.finish_reason
                if calls:
                    rest, made = calls[event.seq].finish()
                    if rest:
                        yield chunk([ChunkChoice(index=event.seq, delta=Delta(content=rest))])
                    if made:
                        reason = _calls_reason(reason)
                        chunks = [
                            ToolCallChunk(index=k, **call.model_dump())
                            for k, call in enumerate(made)
                        ]
                        calls_delta = ToolCallDelta(tool_calls=chunks)
                        yield chunk([ChunkChoice(index=event.seq, delta=calls_delta)])
                done = ChunkChoice(
                    index=event.seq,
                    delta=Delta(),
                    finish_reason=reason,
                    logprobs=take(event.seq) if pending[event.seq] else None,
                )
                yield chunk([done])
            elif isinstance(event, JobDone):
                if body.include_usage():
                    yield chunk([], Usage.of(event.prompt_tokens, event.completion_tokens))
            elif isinstance(event, JobFailed):
                yield sse_error(event.error)
    yield sse_done()
