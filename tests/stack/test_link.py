"""The link proxy: pacing and delay cores, then the proxy itself on loopback.

Delay and bandwidth are asserted from below, where the proxy is exact (it never delivers a byte
before its delay, nor faster than its rate); the upper bounds only say "not wildly more", so a
busy machine cannot fail them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from pice_stack.link import DelayLine, LinkProxy, LinkSpec, TokenBucket


def test_the_bucket_lets_a_burst_out_then_paces_at_the_rate() -> None:
    bucket = TokenBucket(rate=1000.0, burst=1000.0, now=0.0)
    sent = [bucket.reserve(1000, now=0.0) for _ in range(10)]
    assert sent[0] == 0.0  # the saved burst
    assert sent[1:] == pytest.approx([float(i) for i in range(1, 10)])
    # Idle long enough and the burst is back, but no more than the burst.
    assert bucket.reserve(1000, now=100.0) == 100.0
    assert bucket.reserve(1000, now=100.0) == pytest.approx(101.0)


def test_the_delay_line_spreads_arrivals_without_reordering() -> None:
    line = DelayLine(delay=0.040, jitter=0.010, rng=random.Random(1))
    sent = [i * 0.001 for i in range(500)]
    arrivals = [line.arrival(s) for s in sent]
    assert arrivals == sorted(arrivals)
    assert all(a >= s + 0.030 - 1e-12 for s, a in zip(sent, arrivals, strict=True))
    # Jitter is there: delays vary by more than a few microseconds.
    delays = [a - s for s, a in zip(sent, arrivals, strict=True)]
    assert max(delays) - min(delays) > 0.005
    assert max(delays) <= 0.050 + 0.001


def test_link_spec_units_and_validation() -> None:
    spec = LinkSpec.of(delay_ms=40, jitter_ms=10, rate_mbit=20)
    assert spec.delay_s == pytest.approx(0.040)
    assert spec.jitter_s == pytest.approx(0.010)
    assert spec.rate_bytes_s == pytest.approx(2_500_000)
    assert LinkSpec().is_transparent
    with pytest.raises(ValueError, match="jitter"):
        LinkSpec(delay_s=0.01, jitter_s=0.02)
    with pytest.raises(ValueError, match="rate"):
        LinkSpec(rate_bytes_s=0)


class Echo:
    """An echo server that records what it saw, including the end of the stream."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.saw_eof = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while data := await reader.read(65536):
            self.received += data
            writer.write(data)
            await writer.drain()
        self.saw_eof.set()
        writer.close()

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    e = Echo()
    e.server = await asyncio.start_server(e.handle, "127.0.0.1", 0)
    yield e
    await e.aclose()


async def test_round_trip_takes_at_least_twice_the_one_way_delay(echo: Echo) -> None:
    async with LinkProxy(LinkSpec(delay_s=0.050), "127.0.0.1", echo.port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        rtts = []
        for _ in range(5):
            t0 = time.perf_counter()
            writer.write(b"ping")
            await writer.drain()
            assert await reader.readexactly(4) == b"ping"
            rtts.append(time.perf_counter() - t0)
        writer.close()
        await writer.wait_closed()
    assert min(rtts) >= 0.100
    assert sorted(rtts)[2] < 0.100 + 0.5


async def test_bandwidth_cap_holds_over_a_few_hundred_kilobytes(echo: Echo) -> None:
    size = 400_000
    spec = LinkSpec(rate_bytes_s=500_000.0)  # 4 Mbit/s
    async with LinkProxy(spec, "127.0.0.1", echo.port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        t0 = time.perf_counter()

        async def send() -> None:
            writer.write(b"x" * size)
            await writer.drain()

        sender = asyncio.create_task(send())
        got = await reader.readexactly(size)
        elapsed = time.perf_counter() - t0
        await sender
        writer.close()
        await writer.wait_closed()
    assert len(got) == size
    # Each direction is capped: upstream paces the bytes, the echo's reply is paced again but
    # overlaps, so the floor is one direction's worth minus the saved burst.
    assert elapsed >= (size - spec.burst_bytes) / spec.rate_bytes_s
    assert elapsed < 20.0


async def test_order_is_preserved_under_heavy_jitter(echo: Echo) -> None:
    spec = LinkSpec(delay_s=0.020, jitter_s=0.020)
    payload = b"".join(b"%06d;" % i for i in range(2000))
    async with LinkProxy(spec, "127.0.0.1", echo.port, seed=7) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        for i in range(0, len(payload), 700):  # many small writes, each its own chunk
            writer.write(payload[i : i + 700])
            await writer.drain()
            await asyncio.sleep(0)
        got = await reader.readexactly(len(payload))
        writer.close()
        await writer.wait_closed()
    assert got == payload
    assert bytes(echo.received) == payload


async def test_half_close_reaches_the_server_and_the_servers_close_reaches_the_client(
    echo: Echo,
) -> None:
    async with LinkProxy(LinkSpec(delay_s=0.010), "127.0.0.1", echo.port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"last words")
        writer.write_eof()
        await asyncio.wait_for(echo.saw_eof.wait(), timeout=5)
        # The echo answers, then closes: the client reads the answer, then the end.
        assert await asyncio.wait_for(reader.read(), timeout=5) == b"last words"
        writer.close()
        await writer.wait_closed()


async def test_an_unreachable_upstream_closes_the_client() -> None:
    sock_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(sock_server.sockets[0].getsockname()[1])
    sock_server.close()
    await sock_server.wait_closed()
    async with LinkProxy(LinkSpec(), "127.0.0.1", port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()


async def test_closing_the_proxy_with_open_connections_logs_no_error(
    echo: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = LinkProxy(LinkSpec(delay_s=0.010), "127.0.0.1", echo.port)
    await proxy.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hello")
    assert await reader.readexactly(5) == b"hello"
    await proxy.aclose()
    await asyncio.sleep(0.05)  # the stream server's done-callbacks run
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    writer.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
