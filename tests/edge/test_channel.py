"""The edge's side of the reverse channel: its settings, its redial delay, and a session's
answers to the gateway's messages (the end-to-end tests are tests/gateway/test_channel.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from edge_agent.api.channel import ChannelSession, dial_each_address, reconnect_delay
from edge_agent.api.state import EdgeState
from edge_agent.engine.metrics import engine_registry
from edge_agent.settings import EdgeSettings, host_edge_name
from pice.channel_protocol import Cancel, Job, LoadQuery, encode
from pice.edge_protocol import ExpandRequest
from tests.gateway.channel_edge import ScriptedEngine

pytestmark = pytest.mark.timeout(10)


def test_the_redial_delay_doubles_up_to_its_cap_with_jitter() -> None:
    top = [reconnect_delay(n, cap=10.0, rng=lambda: 1.0) for n in range(8)]
    assert top == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    low = [reconnect_delay(n, cap=10.0, rng=lambda: 0.0) for n in range(8)]
    assert low == [d / 2 for d in top], "jitter stays within the upper half"
    assert reconnect_delay(10_000, cap=3.0, rng=lambda: 1.0) == 3.0


def test_dial_urls_come_from_flags_or_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PICE_EDGE_DIAL_URL", "https://gw-a.example, http://gw-b:8080")
    monkeypatch.setenv("PICE_EDGE_API_TOKEN", "fleet")
    settings = EdgeSettings()
    assert settings.dial_url == ["https://gw-a.example", "http://gw-b:8080"]
    assert settings.edge_name() == host_edge_name(socket.gethostname())
    assert EdgeSettings(name="orin-7").edge_name() == "orin-7"
    assert EdgeSettings(dial_url=["http://one"]).dial_url == ["http://one"]


def test_dialling_needs_the_fleet_token_and_a_usable_url() -> None:
    with pytest.raises(ValidationError, match="dial_url needs api_token"):
        EdgeSettings(dial_url=["https://gw.example"])
    with pytest.raises(ValidationError, match="scheme must be"):
        EdgeSettings(dial_url=["ftp://gw.example"], api_token="t")
    assert EdgeSettings().dial_url == []


class Wire:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, frame: str) -> None:
        self.sent.append(json.loads(frame))


def state_of(engine: ScriptedEngine, **settings: Any) -> EdgeState:
    return EdgeState(
        settings=EdgeSettings(**settings),
        engine=engine,
        model_id="edge-scripted",
        aliases=frozenset({"edge-scripted"}),
        metrics=engine_registry(engine.load, "edge-scripted"),
    )


def session(engine: ScriptedEngine, **settings: Any) -> tuple[ChannelSession, Wire]:
    wire = Wire()
    return ChannelSession(state_of(engine, **settings), wire.send), wire


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


REQUEST = ExpandRequest(question="Q?", sketch=["Alpha point", "Beta point"])


async def test_a_job_runs_to_done_and_a_load_query_is_answered() -> None:
    engine = ScriptedEngine(author="edge")
    engine.start()
    channel, wire = session(engine)
    await channel.handle(encode(LoadQuery(id=7)))
    await channel.handle(encode(Job(id="j1", request=REQUEST)))
    await until(lambda: channel.running == 0)
    load, *events = wire.sent
    assert load["type"] == "load"
    assert load["id"] == 7
    assert load["load"]["model"] == "edge-scripted"
    assert {e["id"] for e in events} == {"j1"}
    kinds = [e["event"]["type"] for e in events]
    assert kinds[0] == "start"
    assert kinds[-1] == "done"
    texts = [e["event"]["text"] for e in events if e["event"]["type"] == "point_done"]
    assert texts == ["Body of point 1 from edge.", "Body of point 2 from edge."]


async def test_cancel_stops_the_job_and_frees_it() -> None:
    engine = ScriptedEngine(author="edge", hold=True)
    engine.start()
    channel, _ = session(engine)
    await channel.handle(encode(Job(id="j1", request=REQUEST)))
    await until(engine.held.is_set)
    await channel.handle(encode(Cancel(id="unknown")))  # harmless
    assert channel.running == 1
    await channel.handle(encode(Cancel(id="j1")))
    await until(lambda: channel.running == 0)
    [job] = engine.jobs
    assert job.cancelled_at is not None
    assert engine.running == 0


async def test_a_job_that_cannot_start_is_refused_with_its_status() -> None:
    engine = ScriptedEngine(author="edge")  # never started: the model is still loading
    channel, wire = session(engine)
    await channel.handle(encode(Job(id="j1", request=REQUEST)))
    await until(lambda: channel.running == 0)
    [refused] = wire.sent
    assert refused["type"] == "refused"
    assert refused["status"] == 503
    assert refused["error"]["message"] == "The model is still loading."


async def test_a_full_queue_is_a_429_refusal_and_a_lost_channel_cancels_its_jobs() -> None:
    engine = ScriptedEngine(author="edge", admit_delay=3600)
    engine.start()
    channel, wire = session(engine, max_queued_jobs=1)
    # Job a waits for admission holding the one queue ticket: b is refused.
    await channel.handle(encode(Job(id="a", request=REQUEST)))
    await channel.handle(encode(Job(id="b", request=REQUEST)))
    await channel.handle(b"not json")  # ignored, logged
    await until(lambda: channel.running <= 1)
    refused = [m for m in wire.sent if m["type"] == "refused"]
    assert [(m["id"], m["status"]) for m in refused] == [("b", 429)]
    assert refused[0]["retry_after"] == "1"
    await channel.aclose()
    assert channel.running == 0
    assert all(job.cancelled_at is not None for job in engine.jobs)


async def test_each_address_of_a_gateway_name_gets_its_own_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replicas behind a headless Service: one channel per address, following the DNS."""
    answers = [{"10.0.0.1"}, {"10.0.0.1", "10.0.0.2"}, OSError("DNS away"), {"10.0.0.2"}]
    resolved: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> set[str]:
        resolved.append((host, port))
        answer = answers[min(len(resolved), len(answers)) - 1]
        if isinstance(answer, OSError):
            raise answer
        return answer

    dialled: list[str | None] = []
    closed: list[str | None] = []

    async def fake_dial(*args: Any) -> None:
        address = args[5]
        dialled.append(address)
        try:
            await asyncio.sleep(3600)
        finally:
            closed.append(address)

    monkeypatch.setattr("edge_agent.api.channel.dial", fake_dial)
    state = state_of(ScriptedEngine(author="edge"))
    task = asyncio.create_task(
        dial_each_address(state, "https://gw.example", "e", "t", 1.0, 0.01, resolve)
    )
    await until(lambda: len(resolved) >= len(answers) + 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert resolved[0] == ("gw.example", 443)
    assert dialled == ["10.0.0.1", "10.0.0.2"], "a new replica is dialled, a DNS failure is not"
    assert closed == ["10.0.0.1", "10.0.0.2"], "the gone replica first, the rest at the end"


async def test_a_job_with_an_invalid_request_is_refused_with_a_400() -> None:
    engine = ScriptedEngine(author="edge")
    engine.start()
    channel, wire = session(engine)
    bad = {"type": "job", "id": "j1", "request": {"question": "Q?", "sketch": ["a"], "points": [5]}}
    await channel.handle(json.dumps(bad))
    [refused] = wire.sent
    assert refused["type"] == "refused"
    assert refused["id"] == "j1"
    assert refused["status"] == 400
    assert refused["error"]["type"] == "invalid_request_error"
    assert engine.jobs == []
