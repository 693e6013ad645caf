"""The gateway's HTTP API: OpenAI chat completions and models, plus health and readiness."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from pice.admission import AdmissionGate, Ticket
from pice.errors import ModelNotFoundError
from pice.http.auth import bearer_auth
from pice.http.disconnect import until_disconnect
from pice.http.json_response import json_response
from pice.http.request_id import current_request_id
from pice.http.sse import Event, sse_response
from pice.openai_protocol import ChatCompletionRequest, ModelCard, ModelList, dump, now
from pice_gateway.direct_path import CloudRelay, cloud_completion
from pice_gateway.load_decision import LoadInputs, LoadRule, decide
from pice_gateway.observers import RequestObservation
from pice_gateway.path_choice import PathChoice, apply_route, choose_path
from pice_gateway.progressive import watch
from pice_gateway.progressive.accounting import Clock, PiceReport
from pice_gateway.progressive.options import pice_options
from pice_gateway.progressive.pipeline import ProgressiveRun
from pice_gateway.rate_limit import authorize
from pice_gateway.readiness import readiness
from pice_gateway.render import progressive_completion, progressive_stream
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


def _watched_route(choice: PathChoice) -> bytes:
    """The ``route`` event that opens a stream whose client asked for ``pice.events``."""
    router = choice.route.report() if choice.route is not None else None
    return watch.encode(
        watch.Route(mode=choice.mode, reason=choice.reason, router=router, load=choice.load)
    )


async def _after(first: Event, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """``first``, then ``events``; closing this closes ``events`` (its ``finally`` runs)."""
    yield first
    async with contextlib.aclosing(events) as rest:  # type: ignore[type-var]
        async for event in rest:
            yield event


def _stream(
    state: GatewayState,
    events: AsyncIterator[Event],
    on_close: Callable[[], Awaitable[None]],
    *,
    watched: PathChoice | None = None,
) -> Response:
    """The SSE response; ``watched``: the client asked for ``pice.events``, so the stream
    opens with the route this choice took."""
    if watched is not None:
        events = _after(_watched_route(watched), events)
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
    ticket: Ticket,
    *,
    watching: bool,
) -> Response:
    report = observation.report = PiceReport(
        mode="cloud",
        reason=choice.reason,
        router=choice.route.report() if choice.route else None,
        load=choice.load,
    )
    cloud_model = state.settings.cloud.model
    if body.stream:
        relay = CloudRelay(state.cloud, body, cloud_model=cloud_model, report=report, clock=clock)

        async def close_relay() -> None:
            try:
                await relay.aclose()
            finally:
                ticket.release()

        await relay.start()
        return _stream(
            state,
            relay.events(observation),
            _closing(close_relay, observation),
            watched=choice if watching else None,
        )
    try:
        completion = await until_disconnect(
            request,
            cloud_completion(
                state.cloud, body, cloud_model=cloud_model, report=report, clock=clock
            ),
        )
    finally:
        ticket.release()
    observation.ok()
    return json_response(completion)


async def _progressive_path(
    state: GatewayState,
    body: ChatCompletionRequest,
    choice: PathChoice,
    request: Request,
    observation: RequestObservation,
    clock: Clock,
    ticket: Ticket,
    *,
    watching: bool,
) -> Response:
    settings = state.settings
    if choice.max_points is not None and choice.max_points < settings.progressive.max_points:
        # The decision from load asks the sketch for fewer points.
        fewer = settings.progressive.model_copy(update={"max_points": choice.max_points})
        settings = settings.model_copy(update={"progressive": fewer})
    run = ProgressiveRun(
        state.upstreams(),
        settings,
        body,
        allow_direct=choice.allow_direct,
        request_id=observation.request_id,
        clock=clock,
        watch_events=watching,
    )
    observation.report = run.report
    run.report.load = choice.load
    if choice.route is not None:
        run.report.router = choice.route.report()

    async def close_run() -> None:
        # The admission ticket goes back however the run ends (done, failed, client gone).
        try:
            await run.aclose()
        finally:
            ticket.release()

    try:
        await run.start()
    except BaseException:
        await close_run()
        raise
    if body.stream:
        events = progressive_stream(
            run, body.model, include_usage=body.include_usage(), observation=observation
        )
        return _stream(
            state, events, _closing(close_run, observation), watched=choice if watching else None
        )
    try:
        completion = await until_disconnect(request, progressive_completion(run, body.model))
    finally:
        ticket.release()
    observation.ok()
    return json_response(completion)


def _route_attributes(report: dict[str, Any]) -> dict[str, str | float]:
    """The router's report (decision, score, threshold, ...) as span attributes."""
    return {
        f"pice.router.{key}": value
        for key, value in report.items()
        if isinstance(value, str | float | int) and not isinstance(value, bool)
    }


async def _holding(ticket: Ticket, path: Awaitable[Response]) -> Response:
    """Await a path that was handed ``ticket``; if it fails before the response exists (and so
    before anything else could release the ticket), give the ticket back here."""
    try:
        return await path
    except BaseException:
        ticket.release()
        raise


def build_router(settings: GatewaySettings) -> APIRouter:
    router = APIRouter()
    guard = authorize(bearer_auth(settings.api_keys), settings.rate_limit)
    authed = APIRouter(prefix="/v1", dependencies=[Depends(guard)])
    created = now()
    admission = AdmissionGate(
        settings.admission.max_progressive_requests,
        what="progressive requests in flight",
        retry_after=settings.admission.retry_after_seconds,
    )
    # Never refuses: counts cloud-only requests for the decision from load.
    cloud_only = AdmissionGate(None, what="cloud requests")
    load_rule = LoadRule(**settings.load_decision.model_dump())

    def by_load(state: GatewayState, body: ChatCompletionRequest, choice: PathChoice) -> PathChoice:
        """The decision from load, for a request bound for the progressive path."""
        inputs = LoadInputs(
            edges=state.edges.snapshot(),
            max_points=settings.progressive.max_points,
            point_tokens=min(
                settings.progressive.expansion_max_tokens, state.edges.expected_point_tokens()
            ),
            cloud_in_flight=admission.in_flight + cloud_only.in_flight,
            may_answer_directly=body.model == settings.models.auto,
        )
        decision = decide(inputs, load_rule)
        if decision.mode == "cloud":
            return PathChoice(
                "cloud", f"load:{decision.reason}", route=choice.route, load=decision.report()
            )
        return replace(choice, load=decision.report(), max_points=decision.max_points)

    names = settings.models
    cards = {
        name: ModelCard(id=name, created=created, owned_by="pice")
        for name in (names.auto, names.progressive, names.cloud)
    }

    # Routes are matched in the order they are defined: the chat route, the hot one, first.
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
        # The request's server span (TracingMiddleware's) names the model and the path taken.
        span = state.tracing.current()
        span.set({"pice.model": body.model, "pice.stream": body.stream})
        try:
            # Validated whatever path the request takes: a malformed ``pice`` object is a 400
            # before the first byte. Point-level events only make sense as the answer streams.
            watching = pice_options(body).events and body.stream
            choice = choose_path(body, settings.models, edges_up=state.edges.any_up())
            if choice.wants_route and state.router is not None:
                with state.tracing.span("pice.router") as route_span:
                    decision = await state.router.decide(body.messages)
                    route_span.set(_route_attributes(decision.report()))
                choice = apply_route(choice, decision)
            if choice.mode == "progressive" and load_rule.enabled:
                choice = by_load(state, body, choice)
            span.set({"pice.mode": choice.mode, "pice.reason": choice.reason})
            if choice.mode == "cloud":
                counted = cloud_only.admit()
                return await _holding(
                    counted,
                    _cloud_path(
                        state,
                        body,
                        choice,
                        request,
                        observation,
                        clock,
                        counted,
                        watching=watching,
                    ),
                )
            ticket = admission.admit()
            return await _holding(
                ticket,
                _progressive_path(
                    state, body, choice, request, observation, clock, ticket, watching=watching
                ),
            )
        except BaseException as exc:
            observation.failed(exc)
            raise

    @authed.get("/models")
    async def models() -> dict[str, Any]:
        return dump(ModelList(data=list(cards.values())))

    @authed.get("/models/{model_id}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id not in cards:
            raise ModelNotFoundError(model_id)
        return dump(cards[model_id])

    router.include_router(authed)

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready(request: Request) -> Response:
        """200 when the cloud answers and an edge is up; 503 naming what is missing otherwise
        (``pice_gateway.readiness``). ``/health`` is the liveness answer."""
        state = gateway_state(request)
        is_ready, body = readiness(await state.cloud_probe.check(), state.edges.readiness())
        return json_response(body, status_code=200 if is_ready else 503)

    return router
