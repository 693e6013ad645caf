"""The ``pice-cloud`` pass-through path: its cost per request (docs/operations.md "Overhead")."""

from __future__ import annotations

import json

from sse_starlette import ServerSentEvent

from pice.http.sse import sse_done, sse_json
from tests.gateway.conftest import fake_stack, openai_client
from tests.gateway.fakes import CloudScript, EdgeScript


def _ask() -> dict[str, object]:
    return {"model": "pice-cloud", "messages": [{"role": "user", "content": "Hello?"}]}


def test_finished_streams_return_their_cloud_connection_to_the_pool() -> None:
    cloud = CloudScript()
    with fake_stack(cloud, [EdgeScript("e1")]) as url:
        client = openai_client(url)
        for _ in range(3):
            chunks = list(client.chat.completions.create(**_ask(), stream=True))  # type: ignore[call-overload]
            assert chunks[-1].model_extra["pice"]["mode"] == "cloud"
    # One TCP connection served all three streams: each was read to its end after [DONE].
    assert len(cloud.client_ports) == 3
    assert len(set(cloud.client_ports)) == 1


def test_sse_json_is_the_event_sse_starlette_would_send() -> None:
    payload = {"id": "c1", "choices": [{"delta": {"content": 'é "q" \n'}}]}
    expected = ServerSentEvent(data=json.dumps(payload, separators=(",", ":"), ensure_ascii=False))
    assert sse_json(payload) == expected.encode()
    assert sse_done() == ServerSentEvent(data="[DONE]").encode()


def test_sse_json_keeps_unicode_line_separators_inside_the_one_data_line() -> None:
    # str.splitlines() (ServerSentEvent's) would cut the JSON at U+2028; SSE itself does not.
    event = sse_json({"content": "a\u2028b"})
    assert event.count(b"data: ") == 1
    data = event.removeprefix(b"data: ").removesuffix(b"\r\n\r\n")
    assert json.loads(data) == {"content": "a\u2028b"}
