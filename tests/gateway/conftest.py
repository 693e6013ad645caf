"""Gateway test helpers: a gateway in front of fake or real upstreams."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from pice_gateway.app import create_app
from pice_gateway.observers import ReportObserver, log_report
from pice_gateway.settings import EdgeEndpoint, GatewaySettings
from tests.gateway.fakes import CloudScript, EdgeScript, fake_cloud, fake_edge, serve


def settings_for(cloud_url: str, edges: dict[str, str], **overrides: Any) -> GatewaySettings:
    progressive = {"edge_stall_seconds": 5.0, **overrides.pop("progressive", {})}
    # These fakes exercise the in-band decision of model `pice`; router tests enable it.
    overrides.setdefault("router", {"enabled": False})
    return GatewaySettings(
        cloud={"base_url": cloud_url + "/v1", "model": "cloud-model"},
        edges=[EdgeEndpoint(name=name, url=url) for name, url in edges.items()],
        edge_client={"poll_interval": 0.2},
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
