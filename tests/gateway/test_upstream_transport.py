"""The upstream clients' transport (aiohttp under httpx): its failures keep their meaning.

httpx-aiohttp maps aiohttp's errors onto httpx's coarsely (a refused connection arrives as
``ConnectTimeout``); :func:`pice_gateway.upstream.error_from_exception` reads the cause, so a
dead upstream is a failure and only a real timeout is a timeout. Real sockets, no mocks.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import httpx
import pytest

from pice.errors import UpstreamError, UpstreamTimeoutError
from pice_gateway.settings import pool_limits
from pice_gateway.upstream import post_json, upstream_client
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
