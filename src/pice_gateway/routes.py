"""The gateway's HTTP API: OpenAI chat completions and models, plus health and readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import ServerSentEvent

from pice.errors import ModelNotFoundError
from pice.http.auth import bearer_auth
from pice.http.disconnect import until_disconnect
from pice.http.sse import sse_response
from pice.openai_protocol import ChatCompletionRequest, ModelCard, ModelList, dump, now
from pice_gateway.direct_path import CloudRelay, cloud_completion
from pice_gateway.observers import RequestObservation
from pice_gateway.path_choice import PathChoice, apply_route, choose_path
from pice_gateway.progressive.accounting import Clock, PiceReport
from pice_gateway.progressive.pipeline import ProgressiveRun
from pice_gateway.render import progressive_completion, progressive_stream
from pice_gateway.request_id import current_request_id
from pice_gateway.settings import GatewaySettings
from pice_gateway.state import GatewayState, gateway_state


def _closing(
    aclose: Callable[[], Awaitable[None]], observation: RequestObservation
) -> Callable[[], Awaitable[None]]:
    """A stream's ``on_close``: release its work, and observe a client that left before the
    stream's generator even started (otherwise the generator has already ended it)."""

    async def close() -> None:
        try:
            await aclose()
        finally:
            observation.cancelled()

    return close


def _stream(
    state: GatewayState,
    events: AsyncIterator[ServerSentEvent],
    on_close: Callable[[], Awaitable[None]],
) -> Response:
    knobs = state.settings.stream
    return sse_response(
        events,
        on_close=on_close,
        ping_seconds=knobs.ping_seconds,
        send_timeout=knobs.send_timeout_seconds,
    )


async def _cloud_path(
    state: GatewayState,
    body: ChatCompletionRequest,
    choice: PathChoice,
    request: Request,
    observation: RequestObservation,
    clock: Clock,
) -> Response:
    report = observation.report = PiceReport(
        mode="cloud", reason=choice.reason, router=choice.route.report() if choice.route else None
    )
    cloud_model = state.settings.cloud.model
    if body.stream:
        relay = CloudRelay(state.cloud, body, cloud_model=cloud_model, report=report, clock=clock)
        await relay.start()
        return _stream(state, relay.events(observation), _closing(relay.aclose, observation))
    completion = await until_disconnect(
        request,
        cloud_completion(state.cloud, body, cloud_model=cloud_model, report=report, clock=clock),
    )
    observation.ok()
    return JSONResponse(completion)


async def _progressive_path(
    state: GatewayState,
    body: ChatCompletionRequest,
    choice: PathChoice,
    request: Request,
    observation: RequestObservation,
    clock: Clock,
) -> Response:
    run = ProgressiveRun(
        state.upstreams(),
        state.settings,
        body,
        allow_direct=choice.allow_direct,
        request_id=observation.request_id,
        clock=clock,
    )
    observation.report = run.report
    if choice.route is not None:
        run.report.router = choice.route.report()
    try:
        await run.start()
    except BaseException:
        await run.aclose()
        raise
    if body.stream:
        events = progressive_stream(
            run, body.model, include_usage=body.include_usage(), observation=observation
        )
        return _stream(state, events, _closing(run.aclose, observation))
    completion = await until_disconnect(request, progressive_completion(run, body.model))
    observation.ok()
    return JSONResponse(completion)


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

    names = settings.models
    cards = {
        name: ModelCard(id=name, created=created, owned_by="pice")
        for name in (names.auto, names.progressive, names.cloud)
    }

    @authed.get("/models")
    async def models() -> dict[str, Any]:
        return dump(ModelList(data=list(cards.values())))

    @authed.get("/models/{model_id}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id not in cards:
            raise ModelNotFoundError(model_id)
        return dump(cards[model_id])

    @authed.post("/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        state = gateway_state(request)
        clock = Clock()
        observation = RequestObservation(
            state.report_observers,
            request_id=current_request_id(),
            model=body.model,
            stream=body.stream,
        )
        try:
            choice = choose_path(body, settings.models, edges_up=state.edges.any_up())
            if choice.wants_route and state.router is not None:
                choice = apply_route(choice, await state.router.decide(body.messages))
            path = _cloud_path if choice.mode == "cloud" else _progressive_path
            return await path(state, body, choice, request, observation, clock)
        except BaseException as exc:
            observation.failed(exc)
            raise

    router.include_router(authed)
    return router
