"""Gateway test helpers: a gateway in front of fake or real upstreams."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import openai
import pytest

from pice_gateway.app import create_app
from pice_gateway.observers import ReportObserver, log_report
from pice_gateway.settings import EdgeEndpoint, GatewaySettings
from tests.gateway.fakes import CloudScript, EdgeScript, fake_cloud, fake_edge, serve

# SDK clients made by the tests, closed after each test: one left open keeps its pooled socket
# until a later garbage collection, whose ResourceWarning then fails whichever test is running.
_openai_clients: list[openai.OpenAI] = []


def openai_client(base_url: str, key: str = "none") -> openai.OpenAI:
    """The real OpenAI SDK against ``base_url``, no retries, closed after the test."""
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    _openai_clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_openai_clients() -> Iterator[None]:
    yield
    while _openai_clients:
        _openai_clients.pop().close()


def settings_for(cloud_url: str, edges: dict[str, str], **overrides: Any) -> GatewaySettings:
    progressive = {"edge_stall_seconds": 5.0, **overrides.pop("progressive", {})}
    # These fakes exercise the in-band decision of model `pice`; router tests enable it.
    overrides.setdefault("router", {"enabled": False})
    return GatewaySettings(
        cloud={"base_url": cloud_url + "/v1", "model": "cloud-model"},
        edges=[EdgeEndpoint(name=name, url=url) for name, url in edges.items()],
        edge_client=overrides.pop("edge_client", {"poll_interval": 0.2}),
        progressive=progressive,
        **overrides,
    )


@contextlib.contextmanager
def fake_stack(
    cloud: CloudScript,
    edges: list[EdgeScript],
    *,
    report_observers: Sequence[ReportObserver] = (log_report,),
    **overrides: Any,
) -> Iterator[str]:
    """Fake cloud and edges plus a real gateway, all under uvicorn; yields the gateway's /v1 URL."""
    with contextlib.ExitStack() as stack:
        cloud_url = stack.enter_context(serve(fake_cloud(cloud)))
        edge_urls = {edge.name: stack.enter_context(serve(fake_edge(edge))) for edge in edges}
        extra = overrides.pop("extra_edges", {})
        settings = settings_for(cloud_url, {**edge_urls, **extra}, **overrides)
        gateway_url = stack.enter_context(
            serve(create_app(settings, report_observers=report_observers))
        )
        yield gateway_url + "/v1"
