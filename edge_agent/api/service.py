"""Liveness, readiness, the model list, load and metrics."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge_agent.api.schemas import LoadResponse
from edge_agent.api.state import EdgeState, edge_state
from pice.edge_protocol import EdgeModelCard, EdgeModelList
from pice.errors import ServiceUnavailableError

# /health and /ready stay open (no token): orchestrators probe them.
probes = APIRouter()
router = APIRouter()


@probes.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@probes.get("/ready", response_model=None)
async def ready(request: Request) -> JSONResponse:
    state = edge_state(request)
    if not state.engine.ready:
        err = ServiceUnavailableError(state.load_error or "The model is still loading.")
        return JSONResponse(err.to_body(), status_code=err.status_code, headers=err.headers())
    return JSONResponse({"status": "ready", "model": state.model_id})


@router.get("/v1/models")
async def models(request: Request) -> EdgeModelList:
    state = edge_state(request)
    card = EdgeModelCard(
        id=state.model_id, created=state.created, owned_by="pice-edge", adapter=state.adapter
    )
    modules = [
        EdgeModelCard(
            id=name,
            created=state.created,
            owned_by="pice-edge",
            adapter=adapter,
            parent=state.model_id,
        )
        for name, adapter in state.modules.items()
    ]
    return EdgeModelList(data=[card, *modules])


@router.get("/v1/load")
async def load(request: Request) -> LoadResponse:
    return load_report(edge_state(request))


def load_report(state: EdgeState) -> LoadResponse:
    """What ``GET /v1/load`` answers (and the reverse channel's ``load``)."""
    s = state.engine.load()
    fields = asdict(s) | {
        "kv_usage": round(s.kv_usage, 4),
        "decode_tokens_per_second": round(s.decode_tokens_per_second, 2),
        "decode_batch_mean": None if s.decode_batch_mean is None else round(s.decode_batch_mean, 2),
    }
    return LoadResponse(model=state.model_id, adapter=state.adapter, **fields)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry = edge_state(request).metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
