"""The edge agent's real routes over a fake engine: the ``EngineBackend`` seam, no weights.

The app runs in process through ``httpx.ASGITransport``, its lifespan driven by hand (the
transport sends no lifespan events), so ``/ready``, ``/v1/load``, ``/v1/expand`` and
``/v1/chat/completions`` are served exactly as in production, only the engine is scripted
(``tests.support.fake_engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.api.app import ServedBackend, create_app
from edge_agent.prompts import point_suffix
from edge_agent.settings import EdgeSettings
from pice.errors import ContextOverflowError
from tests.support.fake_engine import FakeBackend

TOKEN = "seam-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL_ID = "edge-fake"


@contextlib.asynccontextmanager
async def serve(fake: FakeBackend, **settings_: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ``fake``, its lifespan running, behind an in-process client."""
    settings = EdgeSettings(model="fake.gguf", model_id=MODEL_ID, api_token=TOKEN, **settings_)

    def backend(_: EdgeSettings) -> ServedBackend:
        return ServedBackend(fake, name="fake-model", aliases=("old-fake-name",))

    app = create_app(settings, backend)
    try:
        async with app.router.lifespan_context(app) as state:
            assert state is not None

            # What uvicorn does with lifespan state: a copy in every request's scope.
            async def with_state(scope: Any, receive: Any, send: Any) -> None:
                scope["state"] = dict(state)
                await app(scope, receive, send)

            transport = httpx.ASGITransport(app=with_state)
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
                yield client
    finally:
        fake.may_start.set()  # a failed test must not leave the lifespan waiting on start()


async def until_ready(client: httpx.AsyncClient) -> None:
    for _ in range(500):
        if (await client.get("/ready")).status_code == 200:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("/ready never said 200")


def sse_data(body: str) -> list[Any]:
    lines = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
    return [d if d == "[DONE]" else json.loads(d) for d in lines]


async def test_ready_follows_the_backend_and_load_reads_its_snapshot() -> None:
    fake = FakeBackend()
    async with serve(fake) as client:
        assert (await client.get("/health")).status_code == 200
        loading = await client.get("/ready")
        assert loading.status_code == 503
        assert loading.json()["error"]["message"] == "The model is still loading."
        # The handlers refuse work until the backend is ready.
        early = await client.post(
            "/v1/expand", json={"question": "q", "sketch": ["a"]}, headers=AUTH
        )
        assert early.status_code == 503
        assert fake.jobs == []

        fake.may_start.set()

        await until_ready(client)
        assert (await client.get("/ready")).json() == {"status": "ready", "model": MODEL_ID}
        load = (await client.get("/v1/load", headers=AUTH)).json()
        assert load["model"] == MODEL_ID
        assert load["running_sequences"] == 3
        assert load["kv_usage"] == 0.25
        assert load["decode_tokens_per_second"] == 12.35
        assert load["decode_batch_mean"] == 2.5
        metrics = (await client.get("/metrics", headers=AUTH)).text
        assert 'pice_edge_running_sequences{model="edge-fake"} 3.0' in metrics
        assert not fake.stopped
    assert fake.stopped  # the lifespan stops the backend it built


async def test_models_and_load_name_the_adapter_in_the_settings(tmp_path: Path) -> None:
    adapter = tmp_path / "expander-v1.gguf"
    adapter.write_bytes(b"GGUF adapter bytes")
    fake = FakeBackend()
    fake.may_start.set()
    async with serve(fake, lora=adapter, lora_scale=0.5) as client:
        await until_ready(client)
        expected = {
            "name": "expander-v1",
            "scale": 0.5,
            "sha256": hashlib.sha256(b"GGUF adapter bytes").hexdigest(),
            "merged": False,
        }
        models = (await client.get("/v1/models", headers=AUTH)).json()
        assert models["data"][0]["adapter"] == expected
        assert models["data"][0]["id"] == MODEL_ID
        assert (await client.get("/v1/load", headers=AUTH)).json()["adapter"] == expected


async def test_a_stock_agent_reports_no_adapter() -> None:
    fake = FakeBackend()
    fake.may_start.set()
    async with serve(fake) as client:
        await until_ready(client)
        assert (await client.get("/v1/models", headers=AUTH)).json()["data"][0]["adapter"] is None
        assert (await client.get("/v1/load", headers=AUTH)).json()["adapter"] is None


async def test_expand_streams_the_backends_events_as_typed_sse() -> None:
    fake = FakeBackend()
    fake.may_start.set()
    async with serve(fake) as client:
        await until_ready(client)
        body = {
            "question": "How do I sleep?",
            "sketch": ["Keep a schedule", "Limit caffeine", "Darken the room"],
            "points": [0, 2],
            "candidates": 2,
            "max_tokens": 7,
        }
        r = await client.post("/v1/expand", json=body, headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")

    [job] = fake.jobs
    spec = job.spec
    assert spec.prefix.startswith("system:")  # rendered by the backend's chat renderer
    assert "How do I sleep?" in spec.prefix
    assert spec.add_special is False
    suffixes = [s.suffix for s in spec.sequences]
    assert (
        suffixes
        == [point_suffix(0, "Keep a schedule")] * 2 + [point_suffix(2, "Darken the room")] * 2
    )
    assert {s.params.max_tokens for s in spec.sequences} == {7}
    assert not job.cancelled  # iterated to the end, then released

    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    start, *middle, done = events[:-1]
    assert start == {
        "type": "start",
        "job_id": "job-fake",
        "model": MODEL_ID,
        "prompt_tokens": 14,
        "queued_ms": 1.5,
    }
    # Sequence i of the job is (point, candidate) in request order.
    labels = [(0, 0), (0, 1), (2, 0), (2, 1)]
    point_done = [e for e in middle if e["type"] == "point_done"]
    assert [(e["point"], e["candidate"]) for e in point_done] == labels
    assert [e["text"] for e in point_done] == [f"seq{i} text" for i in range(4)]
    deltas = [(e["point"], e["candidate"], e["text"]) for e in middle if e["type"] == "delta"]
    assert deltas[:2] == [(0, 0, "seq0 "), (0, 0, "text")]
    assert len(deltas) == 8
    assert done == {
        "type": "done",
        "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22},
    }


async def test_chat_completions_answer_from_the_backend_under_every_alias() -> None:
    fake = FakeBackend()
    fake.may_start.set()
    async with serve(fake) as client:
        await until_ready(client)
        replies = []
        for model in (MODEL_ID, "fake-model", "old-fake-name"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "n": 2}
            replies.append(await client.post("/v1/chat/completions", json=body, headers=AUTH))
        unknown = await client.post(
            "/v1/chat/completions",
            json={"model": "other", "messages": [{"role": "user", "content": "hi"}]},
            headers=AUTH,
        )
    assert [r.status_code for r in replies] == [200, 200, 200]
    reply = replies[0].json()
    assert reply["model"] == MODEL_ID
    assert [c["message"]["content"] for c in reply["choices"]] == ["seq0 text", "seq1 text"]
    assert [c["finish_reason"] for c in reply["choices"]] == ["stop", "stop"]
    assert reply["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    assert fake.jobs[0].spec.prefix == "user:hi"
    assert unknown.status_code == 404
    assert len(fake.jobs) == 3


async def test_a_job_the_backend_refuses_is_a_status_code_before_the_stream() -> None:
    fake = FakeBackend(refuse=ContextOverflowError("too long", param="messages"))
    fake.may_start.set()
    async with serve(fake) as client:
        await until_ready(client)
        r = await client.post("/v1/expand", json={"question": "q", "sketch": ["a"]}, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


@pytest.fixture(autouse=True)
def _no_real_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake backend never resolves a model: fail loudly if anything tries."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("resolve_model called with a fake backend")

    monkeypatch.setattr("edge_agent.api.app.resolve_model", refuse)


async def test_expand_asks_for_the_requests_point_words_and_defaults_to_the_prompts_own() -> None:
    fake = FakeBackend()
    fake.may_start.set()
    body = {"question": "How do I sleep?", "sketch": ["Keep a schedule", "Limit caffeine"]}
    async with serve(fake) as client:
        await until_ready(client)
        default = await client.post("/v1/expand", json=body, headers=AUTH)
        longer = await client.post("/v1/expand", json=body | {"point_words": 80}, headers=AUTH)
        too_short = await client.post("/v1/expand", json=body | {"point_words": 2}, headers=AUTH)
    assert default.status_code == longer.status_code == 200
    first, second = (job.spec.prefix for job in fake.jobs)
    assert "at most 40 words" in first
    assert "one or two short sentences" in first
    assert "at most 80 words" in second
    assert "two to four sentences" in second
    assert "at most 40" not in second
    assert too_short.status_code == 400
    assert too_short.json()["error"]["param"] == "point_words"
    assert len(fake.jobs) == 2, "a refused request submits nothing"
