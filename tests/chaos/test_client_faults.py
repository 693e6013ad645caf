"""Clients that read slowly, vanish mid-stream or wait long for a first token.

A slow reader must hold the gateway back rather than make it buffer: each SSE send waits for the
client's socket to drain, the relay stops reading the cloud, and the cloud's own sends block.
One that stops reading altogether is dropped after ``stream.send_timeout_seconds``. A client
that leaves mid-stream must cancel the work it started (the edge frees the job's KV cells at
its next step) within a second.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from tests.chaos.support import ask
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript

# The slow reader's answer: PIECES content chunks of PIECE bytes each from the cloud (200 MB,
# far more than the sockets between the cloud and the reader can hold).
PIECE = 10_000
PIECES = 20_000


def _raw_stream(url: str, body: dict[str, Any], recv_buffer: int) -> socket.socket:
    """Send a streamed request on a bare socket whose receive buffer is ``recv_buffer`` bytes
    (set before connecting, so the kernel does not grow it): the client reads at its own pace."""
    parsed = httpx.URL(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
    sock.connect((parsed.host, parsed.port or 80))
    payload = json.dumps(body).encode()
    head = (
        f"POST {parsed.path}/chat/completions HTTP/1.1\r\nHost: {parsed.host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def _settled(count: Any, quiet: float = 1.0, limit: float = 30.0) -> int:
    """``count()`` once it has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "never settled"
        time.sleep(0.1)
        if (now := count()) != last:
            last, since = now, time.monotonic()
    return int(last)


def test_slow_client_holds_the_cloud_back_and_a_stuck_one_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cloud = CloudScript(answer="x" * PIECE, repeat=PIECES)
    total = PIECE * PIECES
    with fake_stack(cloud, [EdgeScript("e1")], stream={"send_timeout_seconds": 5.0}) as url:
        sock = _raw_stream(url, ask("pice-cloud", stream=True), recv_buffer=16_384)
        with sock:
            # A slow reader: up to 16 kB every 50 ms (~320 kB/s, far below what the cloud
            # writes) for 3 s. Its sends complete, so it is not dropped, and the cloud may only
            # run ahead of it by what the sockets in between hold (loopback buffers autotune to
            # MBs: 15 MB measured); a gateway buffering for it would let the cloud write it all.
            received = 0
            for _ in range(60):
                received += len(sock.recv(16_384))
                time.sleep(0.05)
            assert received > 100_000
            written = _settled(lambda: cloud.chunks_sent) * PIECE
            assert written - received < total / 4, (written, received)
            assert not cloud.cut_at
            # Stuck: it reads nothing more. The gateway sends nothing for send_timeout, drops
            # the client and closes the cloud's stream; the cloud stops writing.
            stuck_at = time.monotonic()
            deadline = time.monotonic() + 15
            while not cloud.cut_at:
                assert time.monotonic() < deadline, "the stuck client was never dropped"
                time.sleep(0.1)
            assert cloud.cut_at[0] - stuck_at < 10
            assert cloud.chunks_sent * PIECE < total / 4
    # A client gone, not a crash: no "unhandled error" (nor a 500 tried on a started stream).
    assert not [r for r in caplog.records if r.name == "pice.http.errors"]
    assert any("stream dropped" in r.getMessage() for r in caplog.records)


def test_vanishing_client_cancels_the_edge_job_within_a_second() -> None:
    edge = EdgeScript("e1", token_delay=0.3)
    with fake_stack(CloudScript(), [edge]) as url:
        with httpx.stream(
            "POST", url + "/chat/completions", json=ask(stream=True), timeout=30
        ) as response:
            for line in response.iter_lines():
                if "Body" in line:
                    # Leaving the loop drops httpx's line iterator, which closes the
                    # connection at once: the client is gone from here.
                    left = time.monotonic()
                    break
            assert edge.jobs
        deadline = left + 5
        while not edge.cancelled_at:
            assert time.monotonic() < deadline, "the edge job was never cancelled"
            time.sleep(0.01)
        assert edge.cancelled_at[0] - left < 1.0
        assert _settled(lambda: edge.running, quiet=0.3) == 0


def test_vanishing_client_closes_the_cloud_stream_within_a_second() -> None:
    cloud = CloudScript(answer=" ".join(["word"] * 200), token_delay=0.05)
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        with httpx.stream(
            "POST", url + "/chat/completions", json=ask("pice-cloud", stream=True), timeout=30
        ) as response:
            for line in response.iter_lines():
                if "word" in line:
                    left = time.monotonic()
                    break
        deadline = left + 5
        while not cloud.cut_at:
            assert time.monotonic() < deadline, "the cloud stream was never closed"
            time.sleep(0.01)
        assert cloud.cut_at[0] - left < 1.0
        assert cloud.chunks_sent < 200


def test_idle_streams_see_keep_alive_pings_before_the_first_token() -> None:
    cloud = CloudScript(first_token_delay=2.0)
    with fake_stack(cloud, [EdgeScript("e1")], stream={"ping_seconds": 0.4}) as url:
        for model in ("pice", "pice-cloud"):
            with httpx.stream(
                "POST", url + "/chat/completions", json=ask(model, stream=True), timeout=30
            ) as response:
                lines = list(response.iter_lines())
            # The first token comes after 2 s of silence (the role chunk may go out before).
            first = next(n for n, line in enumerate(lines) if _has_text(line))
            pings = [line for line in lines[:first] if line.startswith(":")]
            assert len(pings) >= 2, (model, lines[:first])
            assert "data: [DONE]" in lines[first:]


def _has_text(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))
