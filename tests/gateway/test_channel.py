"""Edges behind NAT: a real gateway (uvicorn) and real edge agents that dial it.

No edge here has an address the gateway knows: the gateway's ``edges`` list is empty, and the
edge agents run without an HTTP server at all (``channel_edge.running_edge``), so every job
and load query that reaches them came over the channel they opened. That is the NAT property:
work flows to an edge that accepts no inbound connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from pice.channel_protocol import connect_url
from pice_gateway.app import create_app
from pice_gateway.edges import EdgeRegistry
from pice_gateway.state import GatewayState
from tests.gateway.channel_edge import TOKEN, ScriptedEngine, edge_settings, running_edge
from tests.gateway.conftest import settings_for
from tests.gateway.fakes import CloudScript, fake_cloud, serve
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
TITLES = ["Alpha point", "Beta point", "Gamma point"]


def expected(author: str) -> str:
    return "".join(
        f"{n}. **{title}**: Body of point {n} from {author}.\n" for n, title in enumerate(TITLES, 1)
    )


def ask(**kwargs: Any) -> dict[str, Any]:
    return {"model": "pice-progressive", "messages": [{"role": "user", "content": "Q?"}], **kwargs}


def gateway_app(cloud_url: str, token: str | None = TOKEN, **overrides: Any) -> FastAPI:
    edge_client: dict[str, Any] = {"poll_interval": 0.2}
    if token is not None:
        edge_client["token"] = token
    # A stall bound far beyond the test's timeout: a failover seen here came from the
    # channel closing, never from the stall timer.
    progressive = {"edge_stall_seconds": 60.0, **overrides.pop("progressive", {})}
    settings = settings_for(
        cloud_url, {}, edge_client=edge_client, progressive=progressive, **overrides
    )
    return create_app(settings)


def registry(app: FastAPI) -> EdgeRegistry:
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    return state.edges


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.01)


def joined(app: FastAPI, *names: str) -> Callable[[], bool]:
    return lambda: all(name in registry(app) for name in names)


@contextlib.contextmanager
def cloud() -> Iterator[str]:
    with serve(fake_cloud(CloudScript())) as url:
        yield url


def test_a_dialled_edge_gets_the_points_and_the_answer_is_exact() -> None:
    engine = ScriptedEngine(author="nat")
    with cloud() as cloud_url:
        app = gateway_app(cloud_url)
        with serve(app) as gateway_url, running_edge(edge_settings("nat", [gateway_url]), engine):
            until(joined(app, "nat"))
            [status] = registry(app).snapshot()
            assert status.up
            assert status.load is not None
            assert status.load.model == "edge-scripted"
            assert status.rtt is not None, "the first load query timed the link"

            response = httpx.post(gateway_url + "/v1/chat/completions", json=ask(), timeout=20)
            assert response.status_code == 200
            body = response.json()
            assert body["choices"][0]["message"]["content"] == expected("nat")
            assert [p["edge"] for p in body["pice"]["points"]] == ["nat"] * 3
            assert engine.jobs, "the edge ran the jobs"
            ready = httpx.get(gateway_url + "/ready").json()
            assert ready["edges"] == {"nat": True}
            # Load queries keep flowing over the channel (the poller's, every 0.2 s).
            polls = engine.load_calls
            until(lambda: engine.load_calls > polls + 2)


def test_a_client_leaving_cancels_the_edge_job_over_the_channel() -> None:
    engine = ScriptedEngine(author="nat", hold=True)
    with cloud() as cloud_url:
        app = gateway_app(cloud_url)
        with serve(app) as gateway_url, running_edge(edge_settings("nat", [gateway_url]), engine):
            until(joined(app, "nat"))
            url = gateway_url + "/v1/chat/completions"
            with httpx.stream("POST", url, json=ask(stream=True), timeout=20) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                while not engine.held.is_set():
                    next(lines)
                left = time.monotonic()
            # The stream is closed: the gateway cancels the run, its channel sends ``cancel``.
            until(lambda: bool(engine.jobs) and all(j.cancelled_at for j in engine.jobs))
            latest = max(j.cancelled_at or 0.0 for j in engine.jobs)
            assert latest - left < 1.0, "the edge freed the job's sequences within a second"
            until(lambda: engine.running == 0)
            until(lambda: registry(app).snapshot()[0].in_flight == 0)


def test_an_edge_dying_mid_job_fails_its_points_over_with_nothing_repeated() -> None:
    steady = ScriptedEngine(author="same-model")
    with cloud() as cloud_url:
        app = gateway_app(cloud_url)
        with serve(app) as gateway_url:
            argv = [sys.executable, "-m", "tests.gateway.channel_edge", "--dial", gateway_url]
            argv += ["--name", "dying", "--author", "same-model", "--hold"]
            # The repository root on the child's path, wherever pytest was started from.
            path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
            dying = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": path})
            try:
                until(joined(app, "dying"))
                url = gateway_url + "/v1/chat/completions"
                with httpx.stream("POST", url, json=ask(stream=True), timeout=20) as response:
                    lines = response.iter_lines()
                    # Every point placed on the only edge, which writes one word and hangs.
                    until(lambda: registry(app).snapshot()[0].in_flight == 3)
                    with running_edge(edge_settings("steady", [gateway_url]), steady):
                        until(joined(app, "steady"))
                        dying.kill()  # SIGKILL: no close frame, the socket just drops
                        text, report = read_stream(lines)
            finally:
                dying.kill()
                dying.wait(timeout=10)
    assert text == expected("same-model"), "the points finished on the steady edge"
    assert text.count("Body") == 3, "nothing the client had was sent again"
    assert all(point["attempts"] == ["dying", "steady"] for point in report["points"])
    assert "dying" not in registry(app)


def read_stream(lines: Iterator[str]) -> tuple[str, dict[str, Any]]:
    """The content and the ``pice`` report of an SSE chat stream."""
    text, report = "", {}
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for choice in chunk.get("choices", []):
            text += choice["delta"].get("content") or ""
        report = chunk.get("pice") or report
    return text, report


def test_the_edge_dials_again_when_the_gateway_restarts() -> None:
    engine = ScriptedEngine(author="nat")
    port = free_port()
    with cloud() as cloud_url, contextlib.ExitStack() as edge:
        first = gateway_app(cloud_url)
        with serve(first, port) as gateway_url:
            # The edge outlives the first gateway: it stops when the test ends.
            edge.enter_context(running_edge(edge_settings("nat", [gateway_url]), engine))
            until(joined(first, "nat"))
        second = gateway_app(cloud_url)
        with serve(second, port) as gateway_url:
            until(joined(second, "nat"))
            response = httpx.post(gateway_url + "/v1/chat/completions", json=ask(), timeout=20)
            assert response.json()["choices"][0]["message"]["content"] == expected("nat")


def test_an_edge_dials_every_address_its_gateway_name_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``dial_each_address``: the channel goes to the resolved address, while the URL's name
    (which no DNS knows here) stays what the edge asks for; one channel per replica."""
    resolved: list[str] = []

    async def replicas(host: str, port: int) -> set[str]:
        resolved.append(host)
        return {"127.0.0.1"}

    monkeypatch.setattr("edge_agent.api.channel.resolve_all", replicas)
    engine = ScriptedEngine(author="nat")
    with cloud() as cloud_url:
        app = gateway_app(cloud_url)
        with serve(app) as gateway_url:
            port = gateway_url.rsplit(":", 1)[1]
            settings = edge_settings(
                "nat", [f"http://gateway-replicas.invalid:{port}"], dial_each_address=True
            )
            with running_edge(settings, engine):
                until(joined(app, "nat"))
                response = httpx.post(gateway_url + "/v1/chat/completions", json=ask(), timeout=20)
                assert response.json()["choices"][0]["message"]["content"] == expected("nat")
    assert resolved[0] == "gateway-replicas.invalid"


@pytest.mark.parametrize(
    ("gateway_token", "edge_token", "reason"),
    [
        (TOKEN, "wrong-token", "Incorrect API key provided."),
        (None, TOKEN, "This gateway accepts no edge channels: set edge_client.token"),
    ],
    ids=["wrong token", "gateway without a fleet token"],
)
def test_a_channel_without_the_fleet_token_is_refused(
    gateway_token: str | None, edge_token: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with cloud() as cloud_url:
        app = gateway_app(cloud_url, token=gateway_token)
        with serve(app) as gateway_url:
            headers = {"Authorization": f"Bearer {edge_token}"}
            with pytest.raises(InvalidStatus) as refused:
                connect(connect_url(gateway_url), additional_headers=headers, open_timeout=5)
            assert refused.value.response.status_code == 403
            assert reason in caplog.text, "the gateway logs why"
            # A real edge with that token is refused on every dial and never joins.
            engine = ScriptedEngine(author="x")
            settings = edge_settings("intruder", [gateway_url], token=edge_token)
            with running_edge(settings, engine):
                until(lambda: caplog.text.count(reason) >= 3)
                assert "intruder" not in registry(app)
            assert engine.jobs == []
