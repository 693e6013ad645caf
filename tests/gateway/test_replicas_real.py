"""The issue's check with real edge agents: two gateway replicas over one Redis, three
``pice edge serve --join`` agents on the bundled 0.5B; during a run of concurrent requests one
agent is killed (SIGKILL) and a fourth joins. Every request completes, every point finished.

The cloud is the fake (a fixed three-point sketch), so the load is the edges'. Marked ``model``:
it loads the GGUF four times (one thread each).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from pice_gateway.app import create_app
from tests.gateway.fakes import CloudScript, fake_cloud, serve
from tests.gateway.fleet import TITLES, TOKEN, fleet_settings, members, until
from tests.support.processes import ServerProcess, free_port, pice_argv
from tests.support.redis_server import redis_server

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]

MODEL = "qwen2.5-coder-0.5b-instruct"


def agent(tmp: Path, name: str, gateway: str) -> ServerProcess:
    port = free_port()
    argv = pice_argv(
        "edge", "serve", "--model", MODEL, "--port", str(port), "--threads", "1",
        "--max-seqs", "4", "--join", gateway, "--name", name,
    )  # fmt: skip
    return ServerProcess(argv, port, tmp / f"{name}.log", env={"PICE_EDGE_API_TOKEN": TOKEN})


def ask(gateway: str) -> dict[str, Any]:
    body = {
        "model": "pice-progressive",
        "messages": [{"role": "user", "content": "What are good ways to stay healthy?"}],
    }
    response = httpx.post(gateway + "/v1/chat/completions", json=body, timeout=600)
    assert response.status_code == 200, response.text
    completion: dict[str, Any] = response.json()
    return completion


def check(completion: dict[str, Any]) -> set[str]:
    """Every point of the answer is there, in order, and finished; the edges that ran them."""
    text = completion["choices"][0]["message"]["content"]
    points = completion["pice"]["points"]
    assert [p["title"] for p in points] == list(TITLES)
    position = 0
    for n, point in enumerate(points, start=1):
        header = f"{n}. **{point['title']}**:"
        found = text.find(header, position)
        assert found >= position, (header, text)
        position = found + len(header)
        assert point["finish_reason"] in ("stop", "length")
        assert point["tokens"] > 0
    return {p["edge"] for p in points}


def test_two_replicas_real_edges_one_killed_one_joined(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp_path))
        cloud = stack.enter_context(serve(fake_cloud(CloudScript())))
        settings = fleet_settings(
            cloud,
            fleet={"redis_url": redis_url, "expiry_seconds": 3.0, "heartbeat_seconds": 0.5},
            progressive={"expansion_max_tokens": 16, "edge_stall_seconds": 60},
        )
        a = stack.enter_context(serve(create_app(settings)))
        b = stack.enter_context(serve(create_app(settings)))
        agents = {}
        for name, gateway in (("e1", a), ("e2", a), ("e3", b)):
            agents[name] = agent(tmp_path, name, gateway).start(timeout=300)
            stack.callback(agents[name].stop)
        for replica in (a, b):
            until(
                lambda r=replica: sum(m["up"] for m in members(r).values()) == 3,
                timeout=120,
                what="both replicas see three edges up",
            )
        pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(6))
        first = [pool.submit(ask, (a, b)[n % 2]) for n in range(6)]

        def e1_busy() -> bool:
            load = httpx.get(
                agents["e1"].base_url + "/v1/load",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            ).json()
            return int(load["running_sequences"]) > 0

        until(e1_busy, timeout=300, what="e1 decoding")
        agents["e1"].kill()
        agents["e4"] = agent(tmp_path, "e4", b).start(timeout=300)
        stack.callback(agents["e4"].stop)
        for replica in (a, b):
            until(
                lambda r=replica: set(members(r)) == {"e2", "e3", "e4"},
                timeout=120,
                what="e1 expired and e4 joined on both replicas",
            )
        second = [pool.submit(ask, (a, b)[n % 2]) for n in range(6)]

        for future in first:
            check(future.result(timeout=600))
        late = set().union(*(check(f.result(timeout=600)) for f in second))
        assert "e1" not in late
        assert "e4" in late, "the edge that joined takes work"

        # SIGTERM: the agent lets its jobs finish, then leaves instead of waiting to expire.
        agents["e2"].stop()
        assert "left gateway" in agents["e2"].log_tail(), agents["e2"].log_tail()
        until(lambda: "e2" not in members(b), what="e2's leave seen by the other replica")
