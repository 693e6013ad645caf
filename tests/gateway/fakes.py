"""Small fake upstreams for protocol and fault-injection tests, served by uvicorn in a thread.

Features are proven against real edge agents elsewhere (``test_real_models.py``); these fakes
exist to make failures happen on cue: an edge that dies mid-stream or stalls, a cloud that errors.
The fake edge speaks the typed wire protocol (:mod:`pice.edge_protocol`): it validates every
``/v1/expand`` body the gateway sends and builds every answer from the agent's own models.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

from pice.edge_protocol import (
    DeltaEvent,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    ExpandRequest,
    LoadResponse,
    PointDoneEvent,
    StartEvent,
)
from pice.openai_protocol import FinishReason, Usage
from tests.support.processes import free_port

OUTLINE = "1. Alpha point\n2. Beta point\n3. Gamma point\n"


@dataclass
class CloudScript:
    """What the fake cloud does."""

    sketch: str = OUTLINE
    expansion: str = "Expanded by the cloud."
    answer: str = "Plain cloud answer."
    # Each reply's words this many times over: a long answer without a long string.
    repeat: int = 1
    token_delay: float = 0.0
    # Silence before the first content token (a cloud still thinking, or queued).
    first_token_delay: float = 0.0
    # Answer every chat request with this status (and an OpenAI error body, and these headers).
    fail_status: int | None = None
    fail_headers: dict[str, str] = field(default_factory=dict)
    # What ``GET /v1/models`` answers (the gateway's readiness check), and how often it was asked.
    models_status: int = 200
    models_requests: int = 0
    # The ids that list holds (a vLLM with ``--lora-modules`` lists each adapter too).
    models: tuple[str, ...] = ("fake",)
    # Break the connection after this many content chunks of the replies of these kinds.
    die_after_chunks: int | None = None
    die_kinds: tuple[str, ...] = ("sketch",)
    # Content chunks written so far, over every stream (what a slow reader held back).
    chunks_sent: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    # The ``x-request-id`` header of each request (None when absent).
    request_ids: list[str | None] = field(default_factory=list)
    # The W3C ``traceparent`` header of each request (None when absent).
    traceparents: list[str | None] = field(default_factory=list)
    # The client port of each request: one port for two requests means a reused connection.
    client_ports: list[int] = field(default_factory=list)
    # Streams closed, whether finished or not.
    closed: int = 0
    # ``time.monotonic()`` of each stream that ended before its ``[DONE]`` (served fake only).
    cut_at: list[float] = field(default_factory=list)


def _kind(body: dict[str, Any]) -> str:
    first = body["messages"][0]
    if first["role"] == "system" and "You plan answers" in str(first.get("content")):
        return "sketch"
    if "Outline of the answer" in str(body["messages"][-1].get("content")):
        return "expansion"
    return "answer"


def split_words(text: str) -> list[str]:
    """``text`` as the "tokens" a fake writes: words, each but the first after its space."""
    out: list[str] = []
    for word in text.split(" "):
        out.append(word if not out else " " + word)
    return out


def _reply_text(script: CloudScript, kind: str) -> str:
    return {"sketch": script.sketch, "expansion": script.expansion, "answer": script.answer}[kind]


def _usage(pieces: list[str]) -> dict[str, int]:
    return {"prompt_tokens": 10, "completion_tokens": len(pieces), "total_tokens": 10 + len(pieces)}


async def cloud_chunks(script: CloudScript, body: dict[str, Any]) -> AsyncIterator[str]:
    """The ``data:`` payloads of the fake cloud's streamed answer to ``body``, then ``[DONE]``.

    Raises :class:`CloudDies` where the script breaks the connection.
    """
    kind = _kind(body)
    whole = split_words(_reply_text(script, kind)) * script.repeat
    # Like a real model, an answer ends at ``max_tokens`` (one piece a token).
    pieces = whole[: body.get("max_tokens") or len(whole)]
    finish_reason = "length" if len(pieces) < len(whole) else "stop"
    base = {"id": "cmpl-fake", "object": "chat.completion.chunk", "created": 1}
    base["model"] = body["model"]
    yield json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    for n, piece in enumerate(pieces):
        if (
            kind in script.die_kinds
            and script.die_after_chunks is not None
            and n >= script.die_after_chunks
        ):
            raise CloudDies("fake cloud dies")
        await asyncio.sleep(script.first_token_delay if n == 0 else script.token_delay)
        yield json.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
        script.chunks_sent += 1
    end = {"index": 0, "delta": {}, "finish_reason": finish_reason}
    yield json.dumps({**base, "choices": [end]})
    if (body.get("stream_options") or {}).get("include_usage"):
        yield json.dumps({**base, "choices": [], "usage": _usage(pieces)})
    yield "[DONE]"


class CloudDies(RuntimeError):
    """The fake cloud breaks the connection mid-stream."""


def cloud_error() -> dict[str, Any]:
    return {"error": {"message": "cloud down", "type": "x", "param": None, "code": None}}


def fake_cloud(script: CloudScript) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        script.models_requests += 1
        if script.models_status != 200:
            return JSONResponse(cloud_error(), status_code=script.models_status)
        cards = [{"id": name, "object": "model"} for name in script.models]
        return JSONResponse({"object": "list", "data": cards})

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        body = await request.json()
        script.requests.append(body)
        script.request_ids.append(request.headers.get("x-request-id"))
        script.traceparents.append(request.headers.get("traceparent"))
        script.client_ports.append(request.client.port if request.client else 0)
        if script.fail_status is not None:
            return JSONResponse(
                cloud_error(), status_code=script.fail_status, headers=script.fail_headers
            )
        if not body.get("stream"):
            text = _reply_text(script, _kind(body))
            return JSONResponse(
                {
                    "id": "cmpl-fake",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": _usage(split_words(text)),
                }
            )

        async def tracked() -> AsyncIterator[str]:
            finished = False
            try:
                async for payload in cloud_chunks(script, body):
                    yield payload
                finished = True
            finally:
                script.closed += 1
                if not finished:
                    script.cut_at.append(time.monotonic())

        return EventSourceResponse(tracked())

    return app


def load_report(**fields: Any) -> LoadResponse:
    """A whole ``/v1/load`` record of an idle 16-sequence edge, with ``fields`` changed."""
    idle: dict[str, Any] = {
        "model": "fake",
        "ready": True,
        "running_sequences": 0,
        "queued_sequences": 0,
        "queued_jobs": 0,
        "max_sequences": 16,
        "free_sequence_slots": 16,
        "kv_cells_total": 4096,
        "kv_cells_reserved": 0,
        "kv_usage": 0.0,
        "decode_tokens_per_second": 0.0,
        "threads": 1,
        "tokens_generated": 0,
        "prefill_tokens": 0,
        "jobs": 0,
        "cancellations": 0,
        "prefix_cache_entries": 0,
        "prefix_cache_cells": 0,
        "prefix_cache_hits": 0,
        "prefix_cache_reused_tokens": 0,
    }
    return LoadResponse.model_validate(idle | fields)


def point_words(point: int, edge: str, extra: int = 0) -> list[str]:
    """The six "tokens" a fake edge writes for ``point`` (and ``extra`` filler words after)."""
    return split_words(f"Body of point {point + 1} from {edge}." + " more" * extra)


def candidate_words(words: list[str], candidate: int) -> list[str]:
    """What candidate ``candidate`` of a fake edge writes: c > 0 in upper case, so a mix shows."""
    return words if candidate == 0 else [word.upper() for word in words]


def point_done(
    point: int,
    words: list[str],
    candidate: int = 0,
    logprob_mean: float = -1.0,
    finish_reason: FinishReason = "stop",
) -> PointDoneEvent:
    return PointDoneEvent(
        point=point,
        candidate=candidate,
        finish_reason=finish_reason,
        text="".join(words),
        prompt_tokens=5,
        completion_tokens=len(words),
        logprob_sum=logprob_mean * len(words),
        logprob_mean=logprob_mean,
        ttft_ms=1.0,
        duration_ms=1.0,
    )


def job_done(points: int) -> DoneEvent:
    return DoneEvent(usage=Usage.of(20 + 5 * points, 6 * points))


def wire(event: BaseModel) -> str:
    """One event as the edge agent writes it on a ``data:`` line."""
    return json.dumps(event.model_dump(mode="json"))


@dataclass
class EdgeScript:
    """What a fake edge does: ``ok``, ``die`` (after the first delta), ``stall``, ``error``,
    ``full`` (its job queue is full: every ``/v1/expand`` is a 429 with Retry-After), or
    ``dead`` (killed: load and new jobs fail, running jobs break at their next token; set it
    while the edge runs)."""

    name: str
    behaviour: str = "ok"
    token_delay: float = 0.01
    # Delay before the ``start`` event (queueing and prefill on a real edge).
    start_delay: float = 0.0
    running: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)
    # The ``x-request-id`` header of each ``/v1/expand`` request (None when absent).
    request_ids: list[str | None] = field(default_factory=list)
    # The W3C ``traceparent`` header of each ``/v1/expand`` request (None when absent).
    traceparents: list[str | None] = field(default_factory=list)
    cancelled: int = 0
    # ``time.monotonic()`` of each cancellation (a job whose client left before its end).
    cancelled_at: list[float] = field(default_factory=list)
    # Whose words it writes (default its own name): edges running the same model write the
    # same text, as one model decoding greedily on two devices does, so a point restarted
    # elsewhere repeats what the first edge had sent.
    author: str | None = None
    # Filler words after each point's body (longer points at the same pace).
    extra_words: int = 0
    # The LoRA adapter this edge reports in /v1/load (None: the stock model).
    adapter: str | None = None


def fake_edge(script: EdgeScript) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/load")
    async def load() -> Response:
        if script.behaviour == "dead":
            return JSONResponse({"error": "dead"}, status_code=503)
        adapter = None if script.adapter is None else {"name": script.adapter, "scale": 1.0}
        report = load_report(running_sequences=script.running, adapter=adapter)
        return JSONResponse(report.model_dump(mode="json"))

    @app.post("/v1/expand", response_model=None)
    async def expand(request: Request) -> Response:
        body = await request.json()
        script.jobs.append(body)
        script.request_ids.append(request.headers.get("x-request-id"))
        script.traceparents.append(request.headers.get("traceparent"))
        if script.behaviour == "dead":
            return JSONResponse({"error": "dead"}, status_code=503)
        if script.behaviour == "full":
            error = {"message": "full", "type": "rate_limit_error", "param": None}
            error["code"] = "server_overloaded"
            return JSONResponse({"error": error}, status_code=429, headers={"Retry-After": "1"})
        expand = ExpandRequest.model_validate(body)
        points, candidates = expand.point_indices(), expand.candidates

        async def events() -> AsyncIterator[str]:
            script.running += len(points) * candidates
            finished = False
            try:
                await asyncio.sleep(script.start_delay)
                yield wire(StartEvent(job_id="j", model="fake", prompt_tokens=20, queued_ms=0.0))
                if script.behaviour == "error":
                    yield wire(ErrorEvent(error=ErrorBody(message="boom", type="internal_error")))
                    yield "[DONE]"
                    finished = True
                    return
                for point in points:
                    # Like the agent, a sequence ends at ``max_tokens`` (one word a token).
                    whole = point_words(point, script.author or script.name, script.extra_words)
                    words = whole[: expand.max_tokens]
                    finish: FinishReason = "length" if len(words) < len(whole) else "stop"
                    for n, word in enumerate(words):
                        if script.behaviour == "dead":
                            raise RuntimeError("fake edge was killed")
                        if script.behaviour == "die" and n == 1:
                            raise RuntimeError("fake edge dies")
                        if script.behaviour == "stall" and n == 1:
                            await asyncio.sleep(3600)
                        await asyncio.sleep(script.token_delay)
                        for candidate in range(candidates):
                            text = candidate_words([word], candidate)[0]
                            yield wire(DeltaEvent(point=point, candidate=candidate, text=text))
                    for candidate in range(candidates):
                        body = candidate_words(words, candidate)
                        yield wire(point_done(point, body, candidate, finish_reason=finish))
                yield wire(job_done(len(points)))
                yield "[DONE]"
                finished = True
            finally:
                script.running -= len(points) * candidates
                if not finished:
                    script.cancelled += 1
                    script.cancelled_at.append(time.monotonic())

        return EventSourceResponse(events())

    return app


@contextlib.contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
