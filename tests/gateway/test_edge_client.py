"""The edge wire protocol as the gateway reads it: typed events and load over an in-process
transport (:mod:`tests.support.upstream_mock`: no sockets)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from pice.edge_protocol import (
    DeltaEvent,
    ExpandEvent,
    ExpandRequest,
    StartEvent,
    parse_expand_event,
)
from pice.errors import UpstreamError, UpstreamProtocolError
from pice.openai_protocol import ChatMessage
from pice_gateway.edge_client import HttpEdgeClient
from tests.gateway.fakes import job_done, load_report, point_done, point_words
from tests.support.upstream_mock import mock_client

REQUEST = ExpandRequest(
    messages=[ChatMessage(role="user", content="q")],
    sketch=["Alpha", "Beta"],
    points=[1],
    request_id="r1",
    max_tokens=32,
    temperature=0.0,
)


def sse(*payloads: BaseModel | dict[str, Any] | str) -> bytes:
    lines = []
    for payload in payloads:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        data = payload if isinstance(payload, str) else json.dumps(payload)
        lines.append(f"data: {data}\n\n")
    return "".join(lines).encode()


def edge(handler: Callable[[httpx.Request], httpx.Response]) -> HttpEdgeClient:
    return HttpEdgeClient("e1", mock_client(handler, base_url="http://edge", name="e1"))


def answering(body: bytes, seen: list[httpx.Request] | None = None) -> HttpEdgeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return edge(handler)


async def events_of(client: HttpEdgeClient) -> list[ExpandEvent]:
    return [event async for event in client.expand(REQUEST)]


def test_request_wire_carries_only_the_fields_set() -> None:
    assert REQUEST.wire() == {
        "messages": [{"role": "user", "content": "q"}],
        "sketch": ["Alpha", "Beta"],
        "points": [1],
        "request_id": "r1",
        "max_tokens": 32,
        "temperature": 0.0,
    }


def test_every_event_round_trips_through_its_wire_form() -> None:
    words = point_words(1, "e1")
    sent: list[ExpandEvent] = [
        StartEvent(job_id="j", model="m", prompt_tokens=3, queued_ms=0.5),
        DeltaEvent(point=1, candidate=0, text=words[0]),
        point_done(1, words),
        job_done(1),
    ]
    for event in sent:
        assert parse_expand_event(event.model_dump(mode="json")) == event


def test_unknown_event_types_are_skipped_and_broken_known_ones_refused() -> None:
    assert parse_expand_event({"type": "progress", "percent": 50}) is None
    with pytest.raises(ValidationError):
        parse_expand_event({"type": "delta", "candidate": 0, "text": "x"})


async def test_expand_yields_typed_events_up_to_done() -> None:
    words = point_words(1, "e1")
    seen: list[httpx.Request] = []
    body = sse(
        StartEvent(job_id="j", model="m", prompt_tokens=3, queued_ms=0.5),
        {"type": "progress"},
        DeltaEvent(point=1, candidate=0, text=words[0]),
        point_done(1, words),
        job_done(1),
        "[DONE]",
    )
    events = await events_of(answering(body, seen))
    assert [type(event).__name__ for event in events] == [
        "StartEvent",
        "DeltaEvent",
        "PointDoneEvent",
        "DoneEvent",
    ]
    assert seen[0].url.path == "/v1/expand"
    assert json.loads(seen[0].content) == REQUEST.wire()


async def test_a_malformed_event_is_a_protocol_error_naming_the_field() -> None:
    body = sse({"type": "delta", "point": "one", "candidate": 0, "text": "x"})
    with pytest.raises(
        UpstreamProtocolError, match=r"edge e1 sent a malformed 'delta' event.*point"
    ):
        await events_of(answering(body))


async def test_an_error_status_is_an_upstream_error_before_any_event() -> None:
    client = edge(lambda _: httpx.Response(503, json={"error": {"message": "busy"}}))
    with pytest.raises(UpstreamError, match="busy") as info:
        await events_of(client)
    assert not isinstance(info.value, UpstreamProtocolError)


async def test_load_is_the_typed_record_and_a_partial_one_is_refused() -> None:
    whole = load_report(running_sequences=3).model_dump(mode="json")
    client = edge(lambda _: httpx.Response(200, json=whole))
    assert (await client.load()).running_sequences == 3
    partial = {"model": "m", "ready": True, "running_sequences": 1}
    client = edge(lambda _: httpx.Response(200, json=partial))
    with pytest.raises(UpstreamProtocolError, match="load report"):
        await client.load()
