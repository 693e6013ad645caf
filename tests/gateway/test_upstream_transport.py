"""The upstream clients' transport (aiohttp): its failures keep their meaning.

A dead upstream is a failure and only a real timeout is a timeout; a body is read as it
arrives; a stream left early closes its connection and one read to its end goes back to the
pool. Real sockets, no mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, MutableMapping

import pytest
from aiohttp import web

from pice.errors import UpstreamError, UpstreamTimeoutError
from pice_gateway.settings import pool_limits
from pice_gateway.upstream import (
    json_event_batches,
    json_events,
    open_stream,
    post_json,
    upstream_client,
)
from pice_gateway.upstream_http import AiohttpTransport, Timeouts, UpstreamClient, client_timeout
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(10)


def client(port: int, read: float = 5.0) -> UpstreamClient:
    return upstream_client(
        "cloud",
        f"http://127.0.0.1:{port}/",
        timeouts=Timeouts(connect=1.0, read=read, pool=1.0),
        limits=pool_limits(4),
        headers={},
        hooks=[],
    )


async def test_a_refused_connection_is_a_failure_not_a_timeout() -> None:
    async with client(free_port()) as http:
        with pytest.raises(UpstreamError) as caught:
            await post_json(http, "chat/completions", {})
    assert not isinstance(caught.value, UpstreamTimeoutError)
    assert "timed out" not in caught.value.message
    assert caught.value.message.startswith("cloud failed: ClientConnectorError")
    # The socket's words name the upstream's address: logged, never sent to the client.
    assert "127.0.0.1" not in caught.value.message
    assert "127.0.0.1" not in json.dumps(caught.value.to_body())
    assert caught.value.detail is not None
    assert "127.0.0.1" in caught.value.detail
    assert caught.value.described == f"{caught.value.message} ({caught.value.detail})"


async def test_an_upstream_that_never_answers_is_a_timeout() -> None:
    silent: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # accept, read nothing, answer nothing

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, client(port, read=0.3) as http:
        with pytest.raises(UpstreamTimeoutError) as caught:
            await post_json(http, "chat/completions", {})
    for writer in silent:
        writer.close()
    assert caught.value.message.startswith("cloud timed out")


async def test_an_upstream_that_drops_the_connection_is_a_failure() -> None:
    async def drop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, client(port) as http:
        with pytest.raises(UpstreamError) as caught:
            await post_json(http, "chat/completions", {})
    assert not isinstance(caught.value, UpstreamTimeoutError)
    assert caught.value.message.startswith("cloud failed:")


class _Chunks:
    """An SSE response whose body arrives in the given reads."""

    status = 200

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.headers = {"content-type": "text/event-stream"}

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def _sse_response(chunks: list[bytes]) -> _Chunks:
    return _Chunks(chunks)


async def test_event_batches_are_what_each_read_brought_and_stop_at_done() -> None:
    response = _sse_response(
        [
            b'data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: {"n"',  # two whole events and a part
            b": 3}\n\n",
            b'data: {"n": 4}\n\ndata: [DONE]\n\ndata: {"n": 5}\n\n',  # nothing after [DONE]
        ]
    )
    batches = [
        [event["n"] for event in batch] async for batch in json_event_batches(response, "cloud")
    ]
    assert batches == [[1, 2], [3], [4]]


async def test_a_malformed_event_in_a_batch_is_an_upstream_error() -> None:
    response = _sse_response([b'data: {"n": 1}\n\ndata: [1, 2]\n\n'])
    with pytest.raises(UpstreamError, match="malformed"):
        async for _ in json_event_batches(response, "cloud"):
            pass


@contextlib.asynccontextmanager
async def sse_server(events: int) -> AsyncIterator[tuple[int, list[int], list[str]]]:
    """An SSE upstream of ``events`` events and ``[DONE]``; yields its port, the client ports
    of the requests it saw (one per connection used) and their ``x-request-id`` headers."""
    peers: list[int] = []
    ids: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        ids.append(request.headers.get("x-request-id", ""))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for n in range(events):
            await response.write(f'data: {{"n": {n}}}\n\n'.encode())
            await asyncio.sleep(0.01)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, peers, ids
    finally:
        await runner.cleanup()


async def test_a_stream_read_to_done_returns_its_connection_to_the_pool() -> None:
    async with sse_server(3) as (port, peers, _), client(port) as http:
        for _ in range(3):
            async with open_stream(http, "v1/chat/completions", {}) as response:
                assert [e["n"] async for e in json_events(response, "cloud")] == [0, 1, 2]
    assert len(peers) == 3
    assert len(set(peers)) == 1


async def test_a_stream_left_early_closes_its_connection() -> None:
    async with sse_server(50) as (port, peers, _), client(port) as http:
        for _ in range(2):
            async with (
                open_stream(http, "v1/chat/completions", {}) as response,
                contextlib.aclosing(json_events(response, "cloud")) as events,
            ):
                assert (await anext(events))["n"] == 0
    assert len(peers) == 2
    assert len(set(peers)) == 2


async def test_header_hooks_run_on_every_call() -> None:
    calls = iter(range(100))

    def number(headers: MutableMapping[str, str]) -> None:
        headers["x-request-id"] = f"r{next(calls)}"

    async with sse_server(1) as (port, _, ids):
        http = UpstreamClient(
            "cloud",
            f"http://127.0.0.1:{port}/",
            AiohttpTransport(pool_limits(2), Timeouts(connect=1.0, read=5.0, pool=1.0)),
            hooks=[number],
        )
        async with http:
            for _ in range(2):
                async with open_stream(http, "/v1/chat/completions", {}) as response:
                    await response.read()
    assert ids == ["r0", "r1"]


def test_paths_join_under_the_base_url_as_httpx_joined_them() -> None:
    http = UpstreamClient(
        "e", "http://edge:8081/prefix", AiohttpTransport(pool_limits(1), Timeouts(1, 1, 1))
    )
    assert http.url("/v1/expand") == "http://edge:8081/prefix/v1/expand"
    assert http.url("v1/load") == "http://edge:8081/prefix/v1/load"
    cloud = UpstreamClient(
        "c", "http://cloud/v1/", AiohttpTransport(pool_limits(1), Timeouts(1, 1, 1))
    )
    assert cloud.url("chat/completions") == "http://cloud/v1/chat/completions"


async def test_a_request_after_the_close_is_a_failure_not_a_runtime_error() -> None:
    """An edge that leaves is closed while a poll of it may still be on its way: that poll is
    a failed connection (the poller marks the edge down), not aiohttp's RuntimeError, which
    once escaped the poller and stopped every edge's polling."""
    http = client(free_port())
    await http.aclose()
    with pytest.raises(UpstreamError) as caught:
        await post_json(http, "chat/completions", {})
    assert caught.value.message == "cloud failed: ClientConnectionError"
    assert caught.value.detail == "the client is closed"


def test_a_connections_set_up_has_its_own_budget_beside_the_pool_wait() -> None:
    # aiohttp's ``connect`` covers the pool wait and the set-up together: it must hold both, or
    # a slow set-up on a busy machine fails at the pool's budget (0.5 s here), not connect's.
    timeout = client_timeout(Timeouts(connect=60.0, read=5.0, pool=0.5))
    assert timeout.sock_connect == 60.0
    assert timeout.connect == 60.5
    assert (timeout.sock_read, timeout.total) == (5.0, None)
