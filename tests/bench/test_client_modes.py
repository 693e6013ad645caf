"""The bench's SSE client and its SoT baseline against a scripted OpenAI-protocol server.

These check the bench's own parsing and accounting; the real systems are measured by the
``model`` smoke test.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pice_bench.client import chat_body, stream_chat
from pice_bench.modes import Endpoints, Systems, answer_from_gateway
from pice_bench.questions import Question
from pice_bench.records import Answer, Mode


def sse(chunks: list[dict[str, Any]], *, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def content(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def client_for(handler: Callable[[dict[str, Any]], httpx.Response]) -> httpx.AsyncClient:
    def respond(request: httpx.Request) -> httpx.Response:
        return handler(json.loads(request.content))

    return httpx.AsyncClient(transport=httpx.MockTransport(respond))


def event_stream(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


URL = "http://cloud/v1/chat/completions"


async def test_stream_chat_collects_text_usage_and_extension() -> None:
    report = {"mode": "progressive", "reason": "outline", "points": [{"title": "Sleep"}],
              "cloud_usage": {"prompt_tokens": 50, "completion_tokens": 9},
              "edge_usage": {"prompt_tokens": 120, "completion_tokens": 30}}  # fmt: skip
    body = sse([content(""), content("1. **Sleep**:"), content(" rest", "stop"),
                {**usage(170, 39), "pice": report}])  # fmt: skip
    async with client_for(lambda _: event_stream(body)) as client:
        result = await stream_chat(client, URL, chat_body("m", [], max_tokens=8))
    assert result.error is None
    assert result.text == "1. **Sleep**: rest"
    assert result.ttft_s is not None
    assert result.ttft_s <= result.latency_s
    assert (result.prompt_tokens, result.completion_tokens) == (170, 39)
    answer = answer_from_gateway(result)
    assert answer.tokens.cloud_completion == 9
    assert answer.tokens.edge_completion == 30
    assert answer.points == ["Sleep"]
    assert answer.served_mode == "progressive:outline"


async def test_stream_chat_records_errors_instead_of_raising() -> None:
    refused = httpx.Response(503, json={"error": {"message": "no capacity", "type": "x"}})
    async with client_for(lambda _: refused) as client:
        result = await stream_chat(client, URL, {})
    assert result.error == "HTTP 503: no capacity"

    broken = sse([content("partial"), {"error": {"message": "edge died"}}])
    async with client_for(lambda _: event_stream(broken)) as client:
        result = await stream_chat(client, URL, {})
    assert result.error == "stream error: edge died"
    assert result.text == "partial"


async def test_stream_chat_stops_when_asked() -> None:
    body = sse([content("a"), content("b"), content("c")])
    seen: list[str] = []

    def on_delta(_t: float, text: str) -> bool:
        seen.append(text)
        return text != "b"

    async with client_for(lambda _: event_stream(body)) as client:
        result = await stream_chat(client, URL, {}, on_delta=on_delta)
    assert seen == ["a", "b"]
    assert result.text == "ab"


def scripted_cloud(requests: list[dict[str, Any]]) -> Callable[[dict[str, Any]], httpx.Response]:
    """A cloud that writes a two-point outline, then one body per point (echoing the title)."""

    def handler(body: dict[str, Any]) -> httpx.Response:
        requests.append(body)
        prompt = body["messages"][-1]["content"]
        if "Outline of the answer" not in prompt:  # the sketch request
            sketch = ["1. Fixed schedule\n2. ", "Dark room\n", "Extra prose after the list\n"]
            return event_stream(sse([*map(content, sketch), usage(80, 12)]))
        if 'point 1 ("Fixed schedule")' in prompt:
            return event_stream(sse([content("1. **Fixed schedule**: Go to bed"),
                                     content(" at ten."), usage(90, 7)]))  # fmt: skip
        return event_stream(sse([content("Keep it dark."), usage(90, 4)]))

    return handler


async def test_sot_baseline_uses_the_gateway_prompts_and_merges_in_order() -> None:
    requests: list[dict[str, Any]] = []
    endpoints = Endpoints(gateway_url=None, cloud_url="http://cloud/v1", cloud_model="m")
    async with client_for(scripted_cloud(requests)) as client:
        systems = Systems(client, endpoints, max_tokens=64)
        assert systems.available() == [Mode.CLOUD, Mode.SOT]
        answer = await systems.answer_fn(Mode.SOT)(Question("q", "generic", "Sleep better?", True))
    assert answer.error is None
    assert answer.points == ["Fixed schedule", "Dark room"]
    assert (
        answer.text == "1. **Fixed schedule**: Go to bed at ten.\n2. **Dark room**: Keep it dark.\n"
    )
    # The sketch stream was closed at the prose line, so its tokens are counted from chunks
    # (3 content chunks) plus the two expansions' own usage.
    assert answer.tokens.cloud_completion == 3 + 7 + 4
    assert answer.tokens.edge_completion == 0
    assert len(requests) == 3
    assert requests[0]["max_tokens"] == 64  # min(sketch budget 160, the request's 64)
    assert all(r["stream"] and r["model"] == "m" for r in requests)
    assert answer.ttft_s is not None
    assert answer.ttft_s <= answer.latency_s


@pytest.mark.parametrize("mode", [Mode.PICE, Mode.PICE_AUTO])
def test_gateway_modes_need_a_gateway(mode: Mode) -> None:
    systems = Systems(httpx.AsyncClient(), Endpoints(None, "http://c/v1", "m"), max_tokens=8)
    assert mode not in systems.available()


async def test_sot_baseline_reports_length_when_a_point_was_cut() -> None:
    def handler(body: dict[str, Any]) -> httpx.Response:
        if "Outline of the answer" not in body["messages"][-1]["content"]:
            return event_stream(sse([content("1. Fixed schedule\n2. Dark room\n"), usage(80, 9)]))
        return event_stream(sse([content("Go to bed", finish="length"), usage(90, 3)]))

    endpoints = Endpoints(gateway_url=None, cloud_url="http://cloud/v1", cloud_model="m")
    async with client_for(handler) as client:
        answer = await Systems(client, endpoints, max_tokens=64).sot_cloud(
            Question("q", "generic", "Sleep better?", True)
        )
    assert answer.error is None
    assert answer.finish_reason == "length"
    assert answer.cut_off


def test_pice_ensemble_asks_the_gateway_for_candidates_and_pice_progressive_for_one() -> None:
    from tests.gateway.conftest import fake_stack
    from tests.gateway.fakes import CloudScript, EdgeScript

    edge = EdgeScript("e1", token_delay=0.0)
    question = Question("q", "generic", "How to stay healthy?", True)

    async def ask(url: str, mode: Mode) -> Answer:
        async with httpx.AsyncClient(timeout=10.0) as client:
            systems = Systems(client, Endpoints(url, None, "m"), max_tokens=64)
            assert mode in systems.available()
            return await systems.answer_fn(mode)(question)

    # The fake edge reports no decode rate, so the compute check is turned off here.
    free = {"progressive": {"ensemble_max_slowdown": math.inf}}
    with fake_stack(CloudScript(), [edge], **free) as url:
        single = asyncio.run(ask(url, Mode.PICE))
        jobs = len(edge.jobs)
        ensemble = asyncio.run(ask(url, Mode.PICE_ENSEMBLE))
    assert single.error is None
    assert ensemble.error is None
    assert single.text == ensemble.text, "the fake's candidates agree, so candidate 0 wins"

    def candidates_per_point(jobs: list[dict[str, Any]]) -> dict[int, int]:
        return {p: job.get("candidates", 1) for job in jobs for p in job["points"]}

    assert candidates_per_point(edge.jobs[:jobs]) == {0: 1, 1: 1, 2: 1}
    assert candidates_per_point(edge.jobs[jobs:]) == {0: 1, 1: 3, 2: 3}
    assert single.extension is not None
    assert ensemble.extension is not None
    assert [p["winner"] for p in single.extension["points"]] == [None, None, None]
    assert [p["winner"] for p in ensemble.extension["points"]] == [None, 0, 0]
    assert [len(p["candidates"]) for p in ensemble.extension["points"]] == [0, 3, 3]
