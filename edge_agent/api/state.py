"""What the lifespan builds, and the typed accessors handlers reach it through."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from prometheus_client import CollectorRegistry

from edge_agent.engine.backend import EngineBackend
from edge_agent.settings import EdgeSettings
from pice.admission import AdmissionGate
from pice.edge_protocol import AdapterInfo
from pice.errors import ModelNotFoundError, ServiceUnavailableError
from pice.openai_protocol import now
from pice.tracing import NO_TRACING, Tracing


@dataclass
class EdgeState:
    settings: EdgeSettings
    engine: EngineBackend
    model_id: str
    # Names a client may put in "model": the served id and the model's own name.
    aliases: frozenset[str]
    metrics: CollectorRegistry
    adapter: AdapterInfo | None = None
    # Named adapters (``lora_modules``) by the model name that selects them.
    modules: dict[str, AdapterInfo] = field(default_factory=dict)
    created: int = field(default_factory=now)
    load_error: str | None = None
    tracing: Tracing = NO_TRACING
    # Jobs waiting for the batcher, bounded by ``max_queued_jobs`` (see ``api.expand``).
    queue: AdmissionGate = field(init=False)

    def __post_init__(self) -> None:
        self.queue = AdmissionGate(
            self.settings.max_queued_jobs, what="jobs queued on this edge", retry_after=1
        )


def edge_state(request: Request) -> EdgeState:
    state: EdgeState = request.state.edge
    return state


def ready_engine(request: Request) -> EngineBackend:
    """The engine, or 503 while the model is still loading."""
    return ready(edge_state(request))


def ready(state: EdgeState) -> EngineBackend:
    """``state``'s engine, or 503 while the model is still loading (any transport)."""
    if not state.engine.ready:
        raise ServiceUnavailableError(state.load_error or "The model is still loading.")
    return state.engine


def check_model(state: EdgeState, model: str) -> str | None:
    """The named adapter ``model`` selects (None: the base model); 404 for any other name."""
    if model in state.aliases:
        return None
    if model in state.modules:
        return model
    raise ModelNotFoundError(model)
