"""The gateway's HTTP API: OpenAI chat completions and models, plus health and readiness."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pice.http.auth import bearer_auth
from pice.http.disconnect import until_disconnect
from pice.http.sse import sse_response
from pice.openai_protocol import ChatCompletionRequest, ModelCard, ModelList, dump, now
from pice_gateway.cloud_direct import CloudRelay, cloud_completion
from pice_gateway.progressive.accounting import Clock
from pice_gateway.progressive.pipeline import ProgressiveRun
from pice_gateway.render import progressive_completion, progressive_stream
from pice_gateway.routing import choose_route
from pice_gateway.settings import GatewaySettings
from pice_gateway.state import gateway_state


def build_router(settings: GatewaySettings) -> APIRouter:
    router = APIRouter()
    authed = APIRouter(prefix="/v1", dependencies=[Depends(bearer_auth(settings.api_keys))])
    created = now()

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready(request: Request) -> dict[str, Any]:
        edges = gateway_state(request).edges.snapshot()
        return {"status": "ready", "edges": {edge.name: edge.up for edge in edges}}

    @authed.get("/models")
    async def models() -> dict[str, Any]:
        names = settings.models
        cards = [
            ModelCard(id=name, created=created, owned_by="pice")
            for name in (names.auto, names.progressive, names.cloud)
        ]
        return dump(ModelList(data=cards))

    @authed.post("/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        state = gateway_state(request)
        clock = Clock()
        route = choose_route(body, settings.models, edges_up=state.edges.any_up())
        if route.mode == "cloud":
            if body.stream:
                relay = CloudRelay(
                    state.cloud,
                    body,
                    cloud_model=settings.cloud.model,
                    reason=route.reason,
                    clock=clock,
                )
                await relay.start()
                return sse_response(relay.events(), on_close=relay.aclose)
            completion = await until_disconnect(
                request,
                cloud_completion(
                    state.cloud,
                    body,
                    cloud_model=settings.cloud.model,
                    reason=route.reason,
                    clock=clock,
                ),
            )
            return JSONResponse(completion)

        run = ProgressiveRun(
            state.upstreams(),
            settings,
            body,
            allow_direct=route.allow_direct,
            request_id=f"pice-{uuid.uuid4().hex[:12]}",
            clock=clock,
        )
        try:
            await run.start()
        except BaseException:
            await run.aclose()
            raise
        if body.stream:
            return sse_response(
                progressive_stream(run, body.model, include_usage=body.include_usage()),
                on_close=run.aclose,
            )
        return JSONResponse(
            await until_disconnect(request, progressive_completion(run, body.model))
        )

    router.include_router(authed)
    return router
