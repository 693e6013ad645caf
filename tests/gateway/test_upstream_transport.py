"""The upstream clients' transport (aiohttp under httpx): its failures keep their meaning.

httpx-aiohttp maps aiohttp's errors onto httpx's coarsely (a refused connection arrives as
``ConnectTimeout``); :func:`pice_gateway.upstream.error_from_exception` reads the cause, so a
dead upstream is a failure and only a real timeout is a timeout. Real sockets, no mocks.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import httpx
import pytest

from pice.errors import UpstreamError, UpstreamTimeoutError
from pice_gateway.settings import pool_limits
from pice_gateway.upstream import json_event_batches, post_json, upstream_client
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(10)


def client(port: int, read: float = 5.0) -> httpx.AsyncClient:
    return upstream_client(
        f"http://127.0.0.1:{port}/",
        timeout=httpx.Timeout(connect=1.0, read=read, write=1.0, pool=1.0),
        limits=pool_limits(4),
        headers={},
        event_hooks={"request": []},
    )


async def test_a_refused_connection_is_a_failure_not_a_timeout() -> None:
    async with client(free_port()) as http:
        with pytest.raises(UpstreamError) as caught:
            await post_json(http, "cloud", "chat/completions", {})
    assert not isinstance(caught.value, UpstreamTimeoutError)
    assert "timed out" not in caught.value.message
    assert caught.value.message.startswith("cloud failed: ClientConnectorError")


async def test_an_upstream_that_never_answers_is_a_timeout() -> None:
    silent: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # accept, read nothing, answer nothing

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, client(port, read=0.3) as http:
        with pytest.raises(UpstreamTimeoutError) as caught:
            await post_json(http, "cloud", "chat/completions", {})
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
            await post_json(http, "cloud", "chat/completions", {})
    assert not isinstance(caught.value, UpstreamTimeoutError)
    assert caught.value.message.startswith("cloud failed:")


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def _sse_response(chunks: list[bytes]) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=_Chunks(chunks)
    )


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
