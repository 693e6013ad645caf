"""Gateway settings: defaults < YAML file (``--config``) < ``PICE_*`` environment < CLI flags.

Nested fields use ``__`` in environment variables (``PICE_CLOUD__BASE_URL``); lists such as
``edges`` take JSON (``PICE_EDGES='[{"name": "e1", "url": "http://..."}]'``). Every field is
documented in ``docs/configuration.md``; ``pice up`` writes this schema as YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from pice.edge_protocol import MAX_CANDIDATES
from pice.settings import YamlSettings, load_yaml_settings
from pice_gateway.placement.registry import PLACEMENT_POLICIES


class Timeouts(BaseModel):
    """httpx timeouts in seconds; ``read`` is the longest silence tolerated between bytes."""

    connect: float = 5.0
    read: float = 120.0
    write: float = 30.0
    pool: float = 5.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


def pool_limits(max_connections: int) -> httpx.Limits:
    """Connection pool limits of an upstream client (idle connections kept up to the same)."""
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


class CloudSettings(BaseModel):
    """The cloud LLM: any OpenAI-compatible server (vLLM, or a ``pice edge serve`` stand-in)."""

    base_url: str = "http://127.0.0.1:8100/v1"
    model: str = "qwen2.5-coder-1.5b-instruct"
    api_key: str | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    # Connections open to the cloud at once: every stream in flight holds one (httpx's own
    # default, 100, made the 101st concurrent stream wait ``timeouts.pool`` and fail with 503).
    max_connections: int = Field(default=1000, ge=1)


class EdgeEndpoint(BaseModel):
    """Where the gateway reaches one edge agent (an item of ``edges``).

    Not the agent's own settings (``edge_agent.settings.EdgeSettings``, what ``pice edge serve``
    reads): the name, URL and token the gateway uses to call it.
    """

    name: str
    url: str
    token: str | None = None


class EdgeClientSettings(BaseModel):
    """How the gateway talks to every edge agent."""

    # /v1/load is polled this often (seconds); the placement policy reads what it saw.
    poll_interval: float = Field(default=1.0, gt=0)
    timeouts: Timeouts = Field(
        default_factory=lambda: Timeouts(connect=2.0, read=60.0, write=10.0, pool=5.0)
    )
    # Connections open to each edge at once: every job in flight or queued there holds one.
    max_connections: int = Field(default=1000, ge=1)


class ModelNames(BaseModel):
    """The three model names the gateway serves."""

    auto: str = "pice"
    progressive: str = "pice-progressive"
    cloud: str = "pice-cloud"


class ProgressiveSettings(BaseModel):
    """Knobs of the progressive path (sketch, expansion, failover)."""

    max_points: int = Field(default=8, ge=1, le=32)
    # Token budget of a sketch when the cloud must write an outline (``pice-progressive``).
    sketch_max_tokens: int = Field(default=160, ge=16)
    # Budget of the sketch stream under ``pice``, where it may turn into a direct answer;
    # a request's own max_tokens wins.
    direct_max_tokens: int = Field(default=512, ge=16)
    sketch_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # Per point; a request's max_tokens lowers it (see ``progressive.spec``).
    expansion_max_tokens: int = Field(default=96, ge=1)
    expansion_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # An edge job admitted by the edge (its ``start`` event) that then sends no event for this
    # long loses its points to another edge, and the edge is marked down.
    edge_stall_seconds: float = Field(default=20.0, gt=0)
    # Before admission a job is queued on the edge, which is not a stall: it may wait this long
    # (from the request, connecting included) for its ``start`` event.
    edge_queue_seconds: float = Field(default=120.0, gt=0)
    # Which edge expands each point: a name registered in ``placement.registry``
    # (``least-loaded``, ``eft``, ``round-robin``).
    placement: str = "least-loaded"
    # Tokens a point is expected to decode before any finished (``eft`` reads a running mean of
    # the points edges finish, starting here, capped by the request's per-point budget).
    expected_point_tokens: float = Field(default=32.0, gt=0)
    # Candidates per point after the first when the edge has spare slots (1 = no ensemble);
    # a request's ``pice.candidates`` overrides it. See ``placement.candidates``. Off by
    # default: on a CPU edge whose cores are already busy, free sequence slots are not spare
    # compute, and k = 3 made answers 49% slower end to end (docs/benchmarks.md, "Ensemble").
    ensemble_candidates: int = Field(default=1, ge=1, le=MAX_CANDIDATES)
    # Sampling temperature of candidates 1..k-1 (candidate 0 keeps the request's own).
    ensemble_temperature: float = Field(default=0.7, gt=0.0, le=2.0)

    @field_validator("placement")
    @classmethod
    def _registered_placement(cls, name: str) -> str:
        if name not in PLACEMENT_POLICIES:
            known = ", ".join(sorted(PLACEMENT_POLICIES))
            raise ValueError(f"unknown placement policy {name!r}; registered: {known}")
        return name


class RouterSettings(BaseModel):
    """The outline/direct router of model ``pice`` (``pice_gateway.router``)."""

    # Off: ``pice`` lets the sketch decide in-band (a DIRECT marker), as before the router.
    enabled: bool = True
    # P(outline) at or above which a question is outlined; None = the weights' tuned value.
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # A weights JSON written by ``pice router train``; None = the one shipped with PICE.
    weights: Path | None = None
    # Where the encoder files are cached (default: the model cache); fetched when missing.
    cache_dir: Path | None = None
    pull: bool = True


class StreamSettings(BaseModel):
    """How streamed answers (SSE) are sent to clients."""

    # A ``: ping`` comment goes out after this many seconds without an event, so proxies keep
    # a stream open while the cloud is still thinking before its first token.
    ping_seconds: float = Field(default=15.0, gt=0)
    # A client that accepts no bytes for this long is dropped and its upstream work cancelled.
    send_timeout_seconds: float = Field(default=60.0, gt=0)


class GatewaySettings(YamlSettings):
    model_config = SettingsConfigDict(env_prefix="PICE_", env_nested_delimiter="__", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    cloud: CloudSettings = Field(default_factory=CloudSettings)
    edges: list[EdgeEndpoint] = Field(
        default_factory=lambda: [EdgeEndpoint(name="edge-1", url="http://127.0.0.1:8101")]
    )
    edge_client: EdgeClientSettings = Field(default_factory=EdgeClientSettings)
    models: ModelNames = Field(default_factory=ModelNames)
    progressive: ProgressiveSettings = Field(default_factory=ProgressiveSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)

    @field_validator("edges")
    @classmethod
    def _unique_edge_names(cls, edges: list[EdgeEndpoint]) -> list[EdgeEndpoint]:
        names = [edge.name for edge in edges]
        if len(names) != len(set(names)):
            raise ValueError(f"edge names must be unique: {names}")
        return edges


def load_settings(config: Path | None = None, **overrides: Any) -> GatewaySettings:
    """Settings from an optional YAML file, the environment and ``overrides`` (CLI flags)."""
    return load_yaml_settings(GatewaySettings, config, **overrides)
