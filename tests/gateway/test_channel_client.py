"""The gateway's side of the reverse channel, against an in-memory socket: the messages it
sends, the errors it raises (which decide failover), and the shared protocol's parsing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pice.channel_protocol import (
    CONNECT_PATH,
    JobEvent,
    LoadReport,
    Refused,
    connect_url,
    encode,
    parse_edge_message,
    parse_gateway_message,
)
from pice.edge_protocol import DeltaEvent, ErrorBody, ExpandRequest, StartEvent
from pice.errors import (
    InvalidRequestError,
    RateLimitError,
    UpstreamError,
    UpstreamProtocolError,
)
from pice_gateway.channel import ChannelEdgeClient
from tests.gateway.fakes import job_done, load_report, point_done

pytestmark = pytest.mark.timeout(10)

REQUEST = ExpandRequest(question="Q?", sketch=["Alpha", "Beta"])


class MemorySocket:
    """What the client sends, parsed; what the test feeds it, as the edge's frames."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed: int | None = None
        self.new_frame = asyncio.Event()

    async def send_text(self, data: str) -> None:
        self.sent.append(json.loads(data))
        self.new_frame.set()

    async def iter_text(self) -> AsyncIterator[str]:
        while (frame := await self.frames.get()) is not None:
            yield frame

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code
        self.frames.put_nowait(None)

    def edge_says(self, message: Any) -> None:
        self.frames.put_nowait(encode(message))

    def drop(self) -> None:
        """The edge's connection ends (its process died, the network changed)."""
        self.frames.put_nowait(None)

    async def sent_type(self, kind: str) -> dict[str, Any]:
        """The first message of type ``kind`` the client sent (waiting for it)."""
        for _ in range(1000):
            found = [m for m in self.sent if m["type"] == kind]
            if found:
                return found[0]
            self.new_frame.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.new_frame.wait(), 0.01)
        raise AssertionError(f"no {kind} message was sent")


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[ChannelEdgeClient, MemorySocket]]:
    client, socket = ChannelEdgeClient("nat"), MemorySocket()
    serving = asyncio.create_task(client.serve(socket))
    try:
        yield client, socket
    finally:
        socket.drop()
        await serving


def event(job_id: str, model: Any) -> JobEvent:
    return JobEvent(id=job_id, event=model.model_dump(mode="json"))


async def test_a_job_streams_its_events_and_a_finished_job_sends_no_cancel() -> None:
    async with connected() as (client, socket):
        seen: list[Any] = []

        async def run() -> None:
            async with contextlib.aclosing(client.expand(REQUEST)) as events:
                async for item in events:
                    seen.append(item)

        task = asyncio.create_task(run())
        job = await socket.sent_type("job")
        assert ExpandRequest.model_validate(job["request"]) == REQUEST
        socket.edge_says(
            event(job["id"], StartEvent(job_id="j", model="m", prompt_tokens=3, queued_ms=0))
        )
        socket.edge_says(event(job["id"], DeltaEvent(point=0, candidate=0, text="Body")))
        socket.edge_says(event("another-job", DeltaEvent(point=0, candidate=0, text="not ours")))
        socket.edge_says(JobEvent(id=job["id"], event={"type": "future_event_type"}))
        socket.edge_says(event(job["id"], point_done(0, ["Body"])))
        socket.edge_says(event(job["id"], job_done(1)))
        await task
        assert [type(e).__name__ for e in seen] == [
            "StartEvent",
            "DeltaEvent",
            "PointDoneEvent",
            "DoneEvent",
        ]
        assert [m["type"] for m in socket.sent] == ["job"], "no cancel after done"
        assert client.running == 0


async def test_closing_a_job_early_sends_cancel_so_the_edge_frees_it() -> None:
    async with connected() as (client, socket):
        events = client.expand(REQUEST)
        first = asyncio.create_task(anext(events))
        job = await socket.sent_type("job")
        socket.edge_says(event(job["id"], DeltaEvent(point=0, candidate=0, text="Body")))
        assert isinstance(await first, DeltaEvent)
        # The consumer leaves (a client gone, a hedge lost): the edge is told at once.
        await events.aclose()
        cancel = await socket.sent_type("cancel")
        assert cancel == {"type": "cancel", "id": job["id"]}
        assert client.running == 0


async def test_a_lost_connection_fails_running_jobs_and_queries_as_a_broken_link() -> None:
    async with connected() as (client, socket):
        events = client.expand(REQUEST)
        waiting = asyncio.create_task(anext(events))
        query = asyncio.create_task(client.load())
        await socket.sent_type("load_query")
        socket.drop()
        with pytest.raises(UpstreamError) as failed:
            await waiting
        # A transport failure, not a protocol breach: dispatch fails the points over and
        # marks the edge down.
        assert not isinstance(failed.value, UpstreamProtocolError)
        assert "channel closed" in failed.value.message
        with pytest.raises(UpstreamError):
            await query
        await events.aclose()
        assert client.closed
        with pytest.raises(UpstreamError):
            await anext(client.expand(REQUEST))
        with pytest.raises(UpstreamError):
            await client.load()
    assert [m["type"] for m in socket.sent].count("cancel") == 0, "nobody left to tell"


async def test_load_is_a_query_answered_over_the_channel() -> None:
    async with connected() as (client, socket):
        answer = asyncio.create_task(client.load())
        query = await socket.sent_type("load_query")
        socket.edge_says(LoadReport(id=query["id"] + 1, load=load_report(running_sequences=9)))
        socket.edge_says(LoadReport(id=query["id"], load=load_report(running_sequences=2)))
        assert (await answer).running_sequences == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, RateLimitError), (400, InvalidRequestError), (503, UpstreamError)],
)
async def test_a_refused_job_raises_what_the_http_status_would(
    status: int, error: type[Exception]
) -> None:
    async with connected() as (client, socket):
        events = client.expand(REQUEST)
        first = asyncio.create_task(anext(events))
        job = await socket.sent_type("job")
        body = ErrorBody(message="nope", type="x")
        socket.edge_says(Refused(id=job["id"], status=status, error=body, retry_after="2"))
        with pytest.raises(error):
            await first
        await events.aclose()
        assert [m["type"] for m in socket.sent] == ["job"]


async def test_a_malformed_event_is_a_protocol_error() -> None:
    async with connected() as (client, socket):
        events = client.expand(REQUEST)
        first = asyncio.create_task(anext(events))
        job = await socket.sent_type("job")
        socket.edge_says(JobEvent(id=job["id"], event={"type": "delta", "point": "zero"}))
        with pytest.raises(UpstreamProtocolError):
            await first
        await events.aclose()


async def test_aclose_fails_what_runs_and_closes_the_socket() -> None:
    async with connected() as (client, socket):
        events = client.expand(REQUEST)
        first = asyncio.create_task(anext(events))
        await socket.sent_type("job")
        await client.aclose()
        with pytest.raises(UpstreamError):
            await first
        await events.aclose()
        for _ in range(100):
            if socket.closed is not None:
                break
            await asyncio.sleep(0.01)
        assert socket.closed == 1001


# -- the shared protocol ----------------------------------------------------------------


def test_connect_url_from_a_gateway_base_url() -> None:
    assert connect_url("http://gw:8080") == "ws://gw:8080" + CONNECT_PATH
    assert connect_url("https://gw.example/") == "wss://gw.example" + CONNECT_PATH
    assert connect_url("https://gw.example/pice") == "wss://gw.example/pice" + CONNECT_PATH
    assert connect_url("wss://proxy.example/custom/path") == "wss://proxy.example/custom/path"
    assert connect_url("ws://gw:1") == "ws://gw:1" + CONNECT_PATH
    for bad in ("gw:8080", "ftp://gw"):
        with pytest.raises(ValueError, match="dial URL"):
            connect_url(bad)


def test_unknown_messages_are_skipped_and_broken_ones_refused() -> None:
    assert parse_edge_message('{"type": "from_a_newer_edge"}') is None
    assert parse_gateway_message('{"type": "from_a_newer_gateway"}') is None
    broken = r"Expecting value|expected a JSON object|validation error"
    for bad in ("not json", "[1]", '{"type": "hello"}'):
        with pytest.raises(ValueError, match=broken):
            parse_edge_message(bad)
    with pytest.raises(ValueError, match=broken):
        parse_gateway_message('{"type": "cancel"}')
