"""The edge agent's app factory: settings in, FastAPI app out; the engine lives in the lifespan.

The engine is whatever ``backend`` builds (:class:`~edge_agent.engine.backend.EngineBackend`);
by default :func:`llama_backend`, the batched llama.cpp engine over ``settings.model``. The
handlers only see the protocol, so a test serves the real routes over a fake engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI

from edge_agent.api import chat, expand, service
from edge_agent.api.channel import dial_all
from edge_agent.api.state import EdgeState
from edge_agent.engine.backend import EngineBackend
from edge_agent.engine.engine import Engine, EngineConfig, NamedAdapter
from edge_agent.engine.lora_merge import merged_model
from edge_agent.engine.metrics import engine_registry
from edge_agent.membership import GatewayLink
from edge_agent.settings import EdgeSettings
from pice.edge_protocol import AdapterInfo, EdgeCapabilities, EdgeRegistration
from pice.http.auth import bearer_auth
from pice.http.errors import install_error_handlers
from pice.http.limits import BodySizeLimitMiddleware
from pice.http.request_id import RequestIdMiddleware
from pice.models.merged import merged_dir
from pice.models.provision import file_sha256
from pice.models.registry import default_cache_dir, resolve_model
from pice.security import check_exposure
from pice.tasks import cancel_and_wait
from pice.tracing import Tracing, TracingMiddleware
from pice.tracing_factory import build_tracing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedBackend:
    """An engine built for the settings (not started yet) and the model's own names."""

    engine: EngineBackend
    # The model's own name (a bundled name or the file's stem); the served id defaults to it.
    name: str
    # Further names clients may put in "model" (a bundled model's deprecated names).
    aliases: tuple[str, ...] = ()


# Builds the engine; blocking (it may fetch and verify a model), so it runs off the loop, and
# what it raises aborts start-up.
BackendFactory = Callable[[EdgeSettings], ServedBackend]


def engine_config(settings: EdgeSettings) -> EngineConfig:
    """The engine's share of the edge settings."""
    return EngineConfig(
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        max_sequences=settings.max_sequences,
        threads=settings.threads,
        prefix_cache_slots=settings.prefix_cache_slots,
        allow_amx=settings.allow_amx,
        extra_buffers=settings.extra_buffers,
        n_gpu_layers=settings.n_gpu_layers,
        # A merged adapter is in the model file (llama_backend), not applied per decode.
        lora=None if settings.lora_merge else settings.lora,
        lora_scale=settings.lora_scale,
        lora_modules=tuple(NamedAdapter(m.name, m.path, m.scale) for m in settings.lora_modules),
    )


def llama_backend(settings: EdgeSettings) -> ServedBackend:
    """The default backend: the batched llama.cpp engine over ``settings.model``."""
    resolved = resolve_model(settings.model, progress=False)
    path = resolved.path
    if settings.lora is not None and settings.lora_merge:
        cache = merged_dir(default_cache_dir())
        path = merged_model(path, settings.lora, settings.lora_scale, cache).path
    engine = Engine(path, engine_config(settings))
    return ServedBackend(engine, resolved.name, resolved.aliases)


def create_app(
    settings: EdgeSettings,
    backend: BackendFactory = llama_backend,
    *,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The edge agent's app; refuses a non-loopback host without a token (:mod:`pice.security`).

    ``tracing`` defaults to what ``settings.tracing`` builds (off unless enabled): each
    ``/v1/expand`` job continues the gateway's trace (its ``traceparent``).
    """
    check_exposure(
        "edge agent",
        settings.host,
        settings.port,
        authenticated=settings.api_token is not None,
        allow_insecure=settings.allow_insecure,
        logger=logger,
    )
    tracing = tracing if tracing is not None else build_tracing(settings.tracing, "pice-edge")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Resolving may fetch and verify a bundled model; a failure aborts start-up.
        served = await asyncio.to_thread(backend, settings)
        engine = served.engine
        model_id = settings.model_id or served.name
        aliases = frozenset({model_id, served.name, *served.aliases})
        clashing = sorted(m.name for m in settings.lora_modules if m.name in aliases)
        if clashing:
            # Either meaning would surprise someone: refuse to start rather than pick one.
            raise ValueError(f"lora_modules names the base model: {', '.join(clashing)}")
        state = EdgeState(
            settings=settings,
            engine=engine,
            model_id=model_id,
            aliases=aliases,
            metrics=engine_registry(engine.load, model_id),
            adapter=await asyncio.to_thread(adapter_info, settings),
            modules=await asyncio.to_thread(module_infos, settings),
            tracing=tracing,
        )
        # Load in the background so /health answers at once and /ready says 503 until done.
        loading = asyncio.create_task(_load(state))
        # Behind NAT: dial the gateways once the model is loaded (edge_agent.api.channel).
        dialling = (
            asyncio.create_task(dial_all(state, loading), name="edge-dial")
            if settings.dial_url
            else None
        )
        # Reachable: register with the gateways once loaded (edge_agent.membership).
        links = [
            GatewayLink(url, lambda: registration(state), settings.api_token)
            for url in settings.join_url
            if settings.api_token is not None  # the settings require it with join_url
        ]
        joining = asyncio.create_task(_join(loading, state, links), name="edge-join")
        try:
            yield {"edge": state}
        finally:
            # uvicorn calls this after it stopped accepting connections and let the running
            # jobs finish; leaving now takes the edge out of placement before expiry, whatever
            # happened to the tasks that join and dial.
            await cancel_and_wait([t for t in (dialling, joining) if t is not None], logger)
            await _leave(links)
            await loading
            await asyncio.to_thread(engine.stop)
            await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(title="PICE edge agent", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if tracing.enabled:
        paths = ("/v1/expand", "/v1/chat/completions")
        app.add_middleware(TracingMiddleware, tracing=tracing, paths=paths)
    # Outermost: the gateway's x-request-id (or a new one) on every response and log line.
    app.add_middleware(RequestIdMiddleware)
    auth = [Depends(bearer_auth([settings.api_token] if settings.api_token else []))]
    app.include_router(service.probes)
    app.include_router(service.router, dependencies=auth)
    app.include_router(expand.router, dependencies=auth)
    app.include_router(chat.router, dependencies=auth)
    return app


def adapter_info(settings: EdgeSettings) -> AdapterInfo | None:
    """What /v1/models and /v1/load say about the adapter in ``settings`` (hashed once)."""
    if settings.lora is None:
        return None
    info = _describe(settings.lora, settings.lora_scale)
    return info.model_copy(update={"merged": settings.lora_merge})


def module_infos(settings: EdgeSettings) -> dict[str, AdapterInfo]:
    """What /v1/models says about each named adapter, by its model name (hashed once)."""
    return {m.name: _describe(m.path, m.scale) for m in settings.lora_modules}


def _describe(path: Path, scale: float) -> AdapterInfo:
    try:
        digest = file_sha256(path)
    except OSError:  # the engine's load reports the missing file
        digest = None
    return AdapterInfo(name=path.stem, scale=scale, sha256=digest)


def registration(state: EdgeState) -> EdgeRegistration:
    """What this edge tells a gateway it joins: where it is, what it serves, how fast."""
    load = state.engine.load()
    capabilities = EdgeCapabilities(
        model=state.model_id,
        adapter=state.adapter,
        max_sequences=load.max_sequences,
        decode_tokens_per_second=load.decode_tokens_per_second or None,
    )
    settings = state.settings
    return EdgeRegistration(
        name=settings.edge_name(), url=settings.advertised_url(), capabilities=capabilities
    )


async def _join(loading: asyncio.Task[None], state: EdgeState, links: list[GatewayLink]) -> None:
    """Once the model is loaded, join every gateway (nothing to offer before that)."""
    await asyncio.shield(loading)
    if links and state.engine.ready:
        await asyncio.gather(*(link.run() for link in links))


async def _leave(links: list[GatewayLink]) -> None:
    # Bounded: a gateway that does not answer expires this edge anyway.
    try:
        await asyncio.wait_for(asyncio.gather(*(link.leave() for link in links)), timeout=5.0)
    except TimeoutError:
        logger.warning("leaving the gateways timed out")
    finally:
        for link in links:
            await link.aclose()


async def _load(state: EdgeState) -> None:
    try:
        await asyncio.to_thread(state.engine.start)
    except Exception as exc:
        logger.exception("Could not load the model")
        state.load_error = f"The model could not be loaded: {exc}"
