"""The cloud down before the first byte, and dying mid-stream, on every path and both modes.

Before the first byte the client gets a real status: 503 with ``Retry-After`` and the OpenAI
error body. After it, the status is already 200: the failure is one ``data: {"error": ...}``
event, then ``data: [DONE]``, and nothing else.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.chaos.support import ask, errors, parse_sse, stream_lines
from tests.gateway.conftest import fake_stack, settings_for
from tests.gateway.fakes import CloudScript, EdgeScript, fake_edge, serve
from tests.support.processes import free_port

MODELS = ["pice", "pice-progressive", "pice-cloud"]


def _assert_openai_503(response: httpx.Response, retry_after: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == retry_after
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "upstream_error"
    assert error["message"].startswith("cloud ")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_cloud_unreachable_is_503_with_retry_after(model: str, stream: bool) -> None:
    from pice_gateway.app import create_app

    dead_cloud = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with serve(fake_edge(EdgeScript("e1"))) as edge:
        settings = settings_for(dead_cloud, {"e1": edge})
        with serve(create_app(settings)) as gateway:
            response = httpx.post(
                gateway + "/v1/chat/completions", json=ask(model, stream=stream), timeout=30
            )
    _assert_openai_503(response, "1")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_cloud_503_keeps_its_retry_after(model: str, stream: bool) -> None:
    cloud = CloudScript(fail_status=503, fail_headers={"Retry-After": "7"})
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        response = httpx.post(url + "/chat/completions", json=ask(model, stream=stream), timeout=30)
    _assert_openai_503(response, "7")


def _one_error_then_done(payloads: list[Any]) -> None:
    assert payloads[-1] == "[DONE]"
    assert payloads.count("[DONE]") == 1
    assert len(errors(payloads)) == 1
    assert payloads[-2]["error"]["type"] == "upstream_error"
    assert set(payloads[-2]["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("model", "kind", "edges"),
    [
        ("pice-cloud", "answer", ["e1"]),  # the relayed answer
        ("pice", "sketch", ["e1"]),  # the sketch, its points already streaming
        ("pice-progressive", "expansion", []),  # the cloud expanding points (no edge)
    ],
)
def test_cloud_dying_mid_stream_is_one_error_event_then_done(
    model: str, kind: str, edges: list[str]
) -> None:
    cloud = CloudScript(
        answer="A plain answer of some length.", die_after_chunks=3, die_kinds=(kind,)
    )
    extra = {"e-dead": f"http://127.0.0.1:{free_port()}"} if not edges else {}
    with fake_stack(cloud, [EdgeScript(name) for name in edges], extra_edges=extra) as url:
        payloads = parse_sse(stream_lines(url, ask(model, stream=True)))
    _one_error_then_done(payloads)
    # Something was streamed before the failure (the failure came after the first byte).
    assert any(isinstance(p, dict) and p.get("choices") for p in payloads[:-2])
