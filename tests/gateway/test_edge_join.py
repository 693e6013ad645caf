"""``pice edge serve --join``: the agent registers with a real gateway, heartbeats, re-registers
after the gateway restarts, and leaves on a graceful shutdown. Agent and gateway both run under
uvicorn; the agent's engine is the fake backend of ``tests.support.fake_engine``. (Here, not in
tests/edge: it needs the gateway, which an edge-only install, pice-edge on Python 3.10, lacks.)"""

from __future__ import annotations

import asyncio
import socket

import pytest
from pydantic import SecretStr, ValidationError

from edge_agent.api.app import ServedBackend, create_app
from edge_agent.membership import Backoff, GatewayLink
from edge_agent.settings import EdgeSettings, host_edge_name, load_settings
from pice.edge_protocol import EdgeCapabilities, EdgeRegistration
from pice_gateway.app import create_app as create_gateway
from tests.gateway.fakes import CloudScript, fake_cloud, serve
from tests.gateway.fleet import TOKEN, ask, fleet_settings, members, until
from tests.support.fake_engine import FakeBackend
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(60)


def agent_settings(gateway: str, port: int, **overrides: object) -> EdgeSettings:
    return EdgeSettings(
        model="fake.gguf",
        model_id="edge-fake",
        api_token=TOKEN,
        port=port,
        join_url=[gateway],
        **({"name": "agent"} | overrides),  # type: ignore[arg-type]
    )


def agent(settings: EdgeSettings, fake: FakeBackend) -> object:
    return create_app(settings, lambda _: ServedBackend(fake, name="fake-model"))


def test_the_agent_joins_once_loaded_is_placed_on_and_leaves_on_shutdown() -> None:
    gateway_port, edge_port = free_port(), free_port()
    fake = FakeBackend()
    with serve(fake_cloud(CloudScript())) as cloud:
        settings = fleet_settings(cloud)
        with serve(create_gateway(settings), port=gateway_port) as gateway:
            edge_settings = agent_settings(gateway, edge_port)
            with serve(agent(edge_settings, fake), port=edge_port) as edge_url:
                assert members(gateway) == {}, "no registration before the model is loaded"
                fake.may_start.set()
                until(lambda: "agent" in members(gateway), what="the agent's registration")
                entry = members(gateway)["agent"]
                assert entry["registration"]["url"] == edge_url
                capabilities = entry["registration"]["capabilities"]
                assert capabilities["model"] == "edge-fake"
                assert capabilities["max_sequences"] == 7
                assert capabilities["decode_tokens_per_second"] == pytest.approx(12.345)
                until(lambda: members(gateway)["agent"]["up"], what="the agent polled up")
                _, report = ask(gateway)
                assert {p["edge"] for p in report["points"]} == {"agent"}
                assert fake.jobs, "the gateway called the agent with the fleet token"
            # The agent shut down gracefully: it left, without waiting for an expiry.
            assert "agent" not in members(gateway)


def test_the_agent_registers_again_with_a_gateway_that_restarted() -> None:
    """Without ``--name`` the agent goes under the host name, the same as a dialling edge."""
    gateway_port, edge_port = free_port(), free_port()
    fake = FakeBackend()
    fake.may_start.set()
    name = host_edge_name(socket.gethostname())
    with serve(fake_cloud(CloudScript())) as cloud:
        settings = fleet_settings(cloud)
        gateway = f"http://127.0.0.1:{gateway_port}"
        with serve(agent(agent_settings(gateway, edge_port, name=None), fake), port=edge_port):
            # The gateway is not up yet: the agent retries with backoff until it is.
            with serve(create_gateway(settings), port=gateway_port):
                until(lambda: name in members(gateway), what="the first registration")
            # A new gateway on the same address knows nothing (no shared store).
            with serve(create_gateway(settings), port=gateway_port):
                until(lambda: name in members(gateway), what="the registration again")
                assert list(members(gateway)) == [name]


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial=0.5, cap=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_join_settings_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICE_EDGE_JOIN_URL", "http://gw-a:8000, http://gw-b:8000/")
    monkeypatch.setenv("PICE_EDGE_ADVERTISE_URL", "http://10.0.0.7:8101")
    monkeypatch.setenv("PICE_EDGE_API_TOKEN", "t")
    settings = load_settings(None, host="0.0.0.0")
    assert settings.join_url == ["http://gw-a:8000", "http://gw-b:8000"]
    assert settings.advertised_url() == "http://10.0.0.7:8101"
    assert settings.edge_name() == host_edge_name(socket.gethostname())


def test_joining_needs_the_fleet_token_and_an_address_the_gateway_can_reach() -> None:
    with pytest.raises(ValidationError, match="api_token"):
        EdgeSettings(join_url=["http://gw:8000"])
    with pytest.raises(ValidationError, match="advertise_url"):
        EdgeSettings(join_url=["http://gw:8000"], api_token="t", host="0.0.0.0")
    with pytest.raises(ValidationError, match="http:// or https://"):
        EdgeSettings(join_url=["gw:8000"], api_token="t")
    loopback = EdgeSettings(join_url=["http://gw:8000"], api_token="t", port=9101)
    assert loopback.advertised_url() == "http://127.0.0.1:9101"


async def test_a_registration_that_raises_is_retried_not_the_end_of_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in building the registration (not the gateway's answer) once ended the link's
    task: no heartbeats, so the gateway expired a healthy edge."""
    calls = 0

    def registration() -> EdgeRegistration:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the registration")
        return EdgeRegistration(
            name="linked",
            url="http://127.0.0.1:9",
            capabilities=EdgeCapabilities(model="m", max_sequences=4),
        )

    with (
        serve(fake_cloud(CloudScript())) as cloud,
        serve(create_gateway(fleet_settings(cloud))) as gw,
    ):
        link = GatewayLink(gw, registration, SecretStr(TOKEN), backoff=Backoff(initial=0.01))
        running = asyncio.create_task(link.run())
        try:
            for _ in range(500):
                if link.registered == "linked":
                    break
                await asyncio.sleep(0.01)
            assert link.registered == "linked"
            assert not running.done()
            assert "linked" in await asyncio.to_thread(members, gw)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await link.leave()
            await link.aclose()
    assert "registration failed (retrying)" in caplog.text


async def test_the_agents_shutdown_stops_its_engine_when_its_join_task_had_failed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from edge_agent.api import app as edge_app

    async def fails(*_: object) -> None:
        raise RuntimeError("the join task died")

    monkeypatch.setattr(edge_app, "_join", fails)
    fake = FakeBackend()
    fake.may_start.set()
    app = agent(agent_settings("http://127.0.0.1:9", free_port()), fake)
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        for _ in range(500):
            if fake.started:
                break
            await asyncio.sleep(0.01)
        assert fake.started
    # Raised out of the lifespan before, and the engine was never stopped.
    assert fake.stopped
    assert "edge-join had failed: RuntimeError('the join task died')" in caplog.text
