"""The gateway's app factory and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from pice.edge_protocol import EdgeRegistration
from pice.errors import ServiceUnavailableError
from pice.http.errors import install_error_handlers
from pice.http.limits import BodySizeLimitMiddleware
from pice.http.request_id import RequestIdMiddleware
from pice.security import check_exposure, is_loopback
from pice.tasks import cancel_and_wait
from pice.tracing import Tracing, TracingMiddleware
from pice.tracing_factory import build_tracing
from pice_gateway import channel_route
from pice_gateway.cloud_client import cloud_http_client
from pice_gateway.edge_client import HttpEdgeClient
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.membership import Fleet, FleetStore, MemoryStore
from pice_gateway.membership.routes import membership_router
from pice_gateway.metrics import GatewayMetrics
from pice_gateway.observers import ReportObserver, log_report
from pice_gateway.placement.registry import placement_policy
from pice_gateway.playground import build_router as playground_router
from pice_gateway.readiness import CloudProbe
from pice_gateway.router.service import RequestRouter
from pice_gateway.routes import build_router
from pice_gateway.settings import EdgeEndpoint, GatewaySettings, RouterSettings, pool_limits
from pice_gateway.state import GatewayState

logger = logging.getLogger(__name__)

RouterFactory = Callable[[RouterSettings], RequestRouter | None]


def load_router(settings: RouterSettings) -> RequestRouter | None:
    """The shipped router, or None when ``router.enabled`` is false."""
    return RequestRouter.load(settings) if settings.enabled else None


def create_app(
    settings: GatewaySettings,
    *,
    report_observers: Sequence[ReportObserver] = (log_report,),
    router: RouterFactory = load_router,
    tracing: Tracing | None = None,
    fleet_store: Callable[[], FleetStore] | None = None,
) -> FastAPI:
    """The gateway app. One pooled client per upstream lives from start-up to shutdown.

    ``report_observers`` see every finished chat request (:mod:`pice_gateway.observers`), as
    does the app's own metrics observer (``GET /metrics``, :mod:`pice_gateway.metrics`);
    ``router`` builds the outline/direct router (blocking; run off the event loop). A router
    that cannot load (its encoder cannot be fetched) stops start-up with the reason.
    ``tracing`` defaults to what ``settings.tracing`` builds (off unless enabled); tests pass
    one over an in-memory exporter. ``fleet_store`` builds the store the replicas share
    (default: Redis at ``fleet.redis_url``, else one in this process).

    Raises :class:`~pice.errors.InsecureBindError` when ``settings.host`` is not loopback and
    there are no API keys, unless ``allow_insecure`` is set (see :mod:`pice.security`).
    """
    check_exposure(
        "gateway",
        settings.host,
        settings.port,
        authenticated=bool(settings.api_keys),
        allow_insecure=settings.allow_insecure,
        logger=logger,
    )
    _warn_about_open_edges(settings)
    metrics = GatewayMetrics(settings.models)
    tracing = tracing if tracing is not None else build_tracing(settings.tracing, "pice-gateway")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeouts = settings.edge_client.timeouts.for_transport()
        limits = pool_limits(settings.edge_client.max_connections)
        registry = EdgeRegistry(
            [
                Edge(HttpEdgeClient.connect(endpoint, timeouts, limits, tracing))
                for endpoint in settings.edges
            ],
            poll_interval=settings.edge_client.poll_interval,
            point_tokens=settings.progressive.expected_point_tokens,
            rate_from=settings.progressive.placement_rate,
        )
        metrics.watch_edges(registry.snapshot)

        def connect(member: EdgeRegistration) -> HttpEdgeClient:
            # A registered edge is called with the fleet's edge token, the one it proved.
            endpoint = EdgeEndpoint(
                name=member.name, url=member.url, token=settings.edge_client.token
            )
            return HttpEdgeClient.connect(endpoint, timeouts, limits, tracing)

        fleet = Fleet(
            registry,
            (fleet_store or (lambda: default_store(settings)))(),
            settings.fleet,
            connect,
            static=frozenset(edge.name for edge in settings.edges),
        )
        request_router = await asyncio.to_thread(router, settings.router)
        cloud = cloud_http_client(settings, tracing)
        app.state.gateway = GatewayState(
            settings=settings,
            cloud=cloud,
            edges=registry,
            placement=placement_policy(settings.progressive.placement),
            fleet=fleet,
            report_observers=(*report_observers, metrics.observe),
            cloud_probe=CloudProbe(
                cloud,
                interval=settings.cloud.ready_check_seconds,
                timeout=settings.cloud.ready_timeout_seconds,
                expected_models=settings.cloud.extra_models(),
            ),
            router=request_router,
            tracing=tracing,
        )
        # One poll before serving, so the first requests already know which edges are up.
        # The members the other replicas know, then one poll of them all, before serving.
        with contextlib.suppress(ServiceUnavailableError):
            await fleet.sync_once()
        await registry.poll_once()
        poller = asyncio.create_task(registry.run_poller(), name="edge-load-poller")
        syncer = asyncio.create_task(fleet.run(), name="fleet-sync")
        try:
            yield
        finally:
            # The clients below are closed whatever happened to these tasks.
            await cancel_and_wait((syncer, poller), logger)
            await fleet.aclose()
            await registry.aclose()
            await cloud.aclose()
            await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(title="PICE gateway", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if tracing.enabled:
        # Inside the request id's middleware, so the request's span records its id.
        app.add_middleware(TracingMiddleware, tracing=tracing, paths=("/v1/chat/completions",))
    # Outermost, so every response carries the request id (a 413 from the size limit too).
    app.add_middleware(RequestIdMiddleware)
    cors = settings.cors
    if cors.allow_origins:
        # Outermost: a preflight is answered before auth (browsers send it without the key),
        # and every response, errors included, carries the CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.allow_origins,
            allow_methods=cors.allow_methods,
            allow_headers=cors.allow_headers,
            allow_credentials=cors.allow_credentials,
            expose_headers=["x-request-id", "retry-after"],
            max_age=cors.max_age,
        )
    app.include_router(build_router(settings))
    # Edges behind NAT dial in here (pice_gateway.channel_route); refused without a fleet token.
    app.include_router(channel_route.router)
    app.include_router(metrics.router())
    app.include_router(playground_router(settings))
    app.include_router(membership_router(settings.edge_client.token))
    return app


def default_store(settings: GatewaySettings) -> FleetStore:
    """Redis at ``fleet.redis_url`` (shared by replicas), else a store in this process."""
    url = settings.fleet.redis_url
    if url is None:
        return MemoryStore()
    # Imported here: redis is an optional dependency (the ``fleet`` extra).
    try:
        from pice_gateway.membership.redis_store import RedisStore
    except ImportError as exc:
        raise RuntimeError(
            "fleet.redis_url needs the redis package: pip install 'pice[fleet]'"
        ) from exc

    return RedisStore.from_url(url.get_secret_value(), settings.fleet.key_prefix)


def _warn_about_open_edges(settings: GatewaySettings) -> None:
    """An edge off this machine without a token is reachable by anyone on its network."""
    for edge in settings.edges:
        host = urlsplit(edge.url).hostname or ""
        if edge.token is None and not is_loopback(host):
            logger.warning(
                "SECURITY: edge %s (%s) has no token; set edges[].token_file or "
                "edge_client.token so only the gateway can use it",
                edge.name,
                edge.url,
            )
