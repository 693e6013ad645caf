"""The ``pice-cloud`` pass-through path: what it costs per request (docs/operations.md "Overhead")."""

from __future__ import annotations

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
