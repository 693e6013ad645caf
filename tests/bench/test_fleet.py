"""fleet-direct: the least-outstanding balancer, and whole answers from each backend."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from pice_bench.fleet import Backend, LeastOutstanding, fleet_backends
from pice_bench.modes import Endpoints, Systems
from pice_bench.questions import Question
from pice_bench.records import Mode

QUESTION = Question("q1", "generic", "Why sleep?", True)


def test_idle_backends_take_turns() -> None:
    balancer = LeastOutstanding(3)
    picks = []
    for _ in range(6):
        index = balancer.acquire()
        picks.append(index)
        balancer.release(index)
    assert picks == [0, 1, 2, 0, 1, 2]


def test_the_least_busy_backend_gets_the_next_request() -> None:
    balancer = LeastOutstanding(3)
    assert [balancer.acquire() for _ in range(3)] == [0, 1, 2]
    assert balancer.acquire() == 0  # all at 1: rotation
    balancer.release(2)
    balancer.release(1)
    assert balancer.outstanding == [2, 0, 0]
    assert balancer.acquire() == 1
    assert balancer.acquire() == 2
    assert balancer.outstanding == [2, 1, 1]
    # 1 and 2 tie at one each; the rotation continues after the last pick (2), so 1.
    assert balancer.acquire() == 1
    assert balancer.outstanding == [2, 2, 1]
    with pytest.raises(ValueError, match="no request outstanding"):
        LeastOutstanding(1).release(0)


def test_fleet_backends_list_the_cloud_then_each_edge() -> None:
    fleet = fleet_backends("http://c/v1", "big", ["http://e1", "http://e2/"], ["small", "small"])
    assert [(b.name, b.base_url, b.model, b.is_cloud) for b in fleet] == [
        ("cloud", "http://c/v1", "big", True),
        ("edge-1", "http://e1/v1", "small", False),
        ("edge-2", "http://e2/v1", "small", False),
    ]


def _answer(text: str, prompt: int, completion: int) -> bytes:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}},
    ]
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n"


async def test_fleet_direct_spreads_concurrent_questions_and_counts_tokens_by_side() -> None:
    hits: list[tuple[str, str]] = []
    keys: dict[str, str | None] = {}
    release = asyncio.Event()
    all_in = asyncio.Event()

    async def respond(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        hits.append((request.url.host, body["model"]))
        keys[request.url.host] = request.headers.get("authorization")
        if len(hits) == 3:
            all_in.set()
        await release.wait()  # hold every answer, so all three are outstanding at once
        return httpx.Response(
            200,
            content=_answer(f"from {request.url.host}", 10, 5),
            headers={"content-type": "text/event-stream"},
        )

    fleet = (
        Backend("cloud", "http://cloud/v1", "big", is_cloud=True, api_key="ck"),
        Backend("edge-1", "http://edge1/v1", "small", api_key="ek"),
        Backend("edge-2", "http://edge2/v1", "small", api_key="ek"),
    )
    endpoints = Endpoints(gateway_url=None, cloud_url="http://cloud/v1", cloud_model="big",
                          fleet=fleet)  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as client:
        systems = Systems(client, endpoints, max_tokens=16)
        assert Mode.FLEET in systems.available()
        answer_fn = systems.answer_fn(Mode.FLEET)
        tasks = [asyncio.create_task(answer_fn(QUESTION)) for _ in range(3)]
        await asyncio.wait_for(all_in.wait(), timeout=10)
        release.set()
        answers = await asyncio.gather(*tasks)
    assert sorted(hits) == [("cloud", "big"), ("edge1", "small"), ("edge2", "small")]
    assert keys == {"cloud": "Bearer ck", "edge1": "Bearer ek", "edge2": "Bearer ek"}
    served = {a.served_mode: a for a in answers}
    assert set(served) == {"fleet:cloud", "fleet:edge-1", "fleet:edge-2"}
    assert served["fleet:cloud"].tokens.cloud_completion == 5
    assert served["fleet:cloud"].tokens.edge_completion == 0
    assert served["fleet:edge-1"].tokens.edge_completion == 5
    assert served["fleet:edge-1"].tokens.cloud_completion == 0
    assert served["fleet:edge-2"].text == "from edge2"


def test_fleet_direct_needs_a_fleet() -> None:
    systems = Systems(httpx.AsyncClient(), Endpoints(None, "http://c/v1", "m"), max_tokens=8)
    assert Mode.FLEET not in systems.available()
