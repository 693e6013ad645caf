"""The gateway's per-process state, built in the lifespan and reached through typed accessors."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from pice.tracing import NO_TRACING, Tracing
from pice_gateway.cloud_meter import CloudMeter
from pice_gateway.edges import EdgeRegistry
from pice_gateway.membership.fleet import Fleet
from pice_gateway.observers import ReportObserver
from pice_gateway.placement.base import PlacementPolicy
from pice_gateway.progressive.pipeline import Upstreams
from pice_gateway.readiness import CloudProbe
from pice_gateway.router.service import RequestRouter
from pice_gateway.settings import GatewaySettings
from pice_gateway.upstream_http import UpstreamClient


@dataclass(frozen=True)
class GatewayState:
    settings: GatewaySettings
    cloud: UpstreamClient
    edges: EdgeRegistry
    placement: PlacementPolicy
    # Registered edges and what the replicas share (``pice_gateway.membership``).
    fleet: Fleet
    # Called once per finished chat request (see ``pice_gateway.observers``).
    report_observers: tuple[ReportObserver, ...]
    # Whether the cloud answers, for ``GET /ready`` (cached; see ``pice_gateway.readiness``).
    cloud_probe: CloudProbe
    # Outline or direct for model ``pice``; None when the router is disabled.
    router: RequestRouter | None = None
    tracing: Tracing = NO_TRACING
    # The cloud's streams and measured speed, shared by every progressive run.
    cloud_meter: CloudMeter = field(default_factory=CloudMeter)

    def upstreams(self) -> Upstreams:
        return Upstreams(
            cloud=self.cloud,
            registry=self.edges,
            policy=self.placement,
            tracing=self.tracing,
            cloud_meter=self.cloud_meter,
        )


def gateway_state(request: Request) -> GatewayState:
    state = request.app.state.gateway
    assert isinstance(state, GatewayState), "the gateway lifespan has not run"
    return state


def cloud_client(request: Request) -> UpstreamClient:
    return gateway_state(request).cloud


def edge_registry(request: Request) -> EdgeRegistry:
    return gateway_state(request).edges
