"""Edges that die or hang mid-stream, through the real gateway under uvicorn.

The victim edge is a fake in a process of its own, so it can be SIGKILLed (a crashed device) or
SIGSTOPped (a hung one: its sockets stay open, nothing more comes) while it streams. Both edges
write the same words, as two edges running the same model greedily would: a point restarted on
the good edge then repeats what the victim had sent, and the client must see each word once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.support import (
    EXPECTED,
    SAME_MODEL,
    ask,
    content,
    edge_process,
    errors,
    parse_sse,
    pice_report,
    stream_lines,
)
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript
from tests.support.processes import ServerProcess, running

CONCURRENT = 4


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[ServerProcess]:
    # Slow enough that a point is still streaming when the fault strikes.
    with running(edge_process(tmp_path, "victim", token_delay=0.2), timeout=60) as server:
        try:
            yield server
        finally:
            server.kill()  # SIGKILL also ends a stopped process


def _wait_until_streaming(edge: ServerProcess) -> None:
    """Until the victim has jobs running and has sent a couple of their tokens."""
    deadline = time.monotonic() + 20
    while httpx.get(edge.base_url + "/v1/load", timeout=5).json()["running_sequences"] == 0:
        assert time.monotonic() < deadline, "the victim never got work"
        time.sleep(0.05)
    time.sleep(0.5)


def _streams_under_fault(url: str, fault: Callable[[], None]) -> list[list[Any]]:
    """``CONCURRENT`` streamed answers, with ``fault`` striking while they stream."""
    with ThreadPoolExecutor(CONCURRENT) as pool:
        futures = [pool.submit(stream_lines, url, ask(stream=True)) for _ in range(CONCURRENT)]
        fault()
        return [parse_sse(future.result(timeout=60)) for future in futures]


def _assert_complete_and_failed_over(answers: list[list[Any]]) -> None:
    for payloads in answers:
        assert errors(payloads) == []
        assert payloads[-1] == "[DONE]"
        # Every point, in order, each word once: the restarted points repeated the victim's
        # text and only what went beyond it was sent.
        assert content(payloads) == EXPECTED
    points = [point for payloads in answers for point in pice_report(payloads)["points"]]
    assert all(point["edge"] == "good" for point in points)
    assert any(point["attempts"][:1] == ["victim"] for point in points), "no point failed over"


def _settings() -> dict[str, Any]:
    # Round robin: the victim surely gets points of every request.
    return {"progressive": {"placement": "round-robin", "edge_stall_seconds": 1.0}}


def test_edge_killed_mid_stream_loses_no_request(victim: ServerProcess) -> None:
    good = EdgeScript("good", author=SAME_MODEL)
    with fake_stack(
        CloudScript(), [good], extra_edges={"victim": victim.base_url}, **_settings()
    ) as url:

        def kill() -> None:
            _wait_until_streaming(victim)
            victim.kill()

        _assert_complete_and_failed_over(_streams_under_fault(url, kill))


def test_hung_edge_loses_no_request_and_is_left_out(victim: ServerProcess) -> None:
    good = EdgeScript("good", author=SAME_MODEL)
    with fake_stack(
        CloudScript(), [good], extra_edges={"victim": victim.base_url}, **_settings()
    ) as url:
        assert victim.proc is not None

        def hang() -> None:
            _wait_until_streaming(victim)
            os.killpg(victim.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]

        _assert_complete_and_failed_over(_streams_under_fault(url, hang))
        # Its load polls time out too: later requests no longer wait on it.
        after = parse_sse(stream_lines(url, ask(stream=True)))
        assert content(after) == EXPECTED
        assert all(p["attempts"] == ["good"] for p in pice_report(after)["points"])
