"""Gateway settings: defaults < YAML file (``--config``) < ``PICE_*`` environment < CLI flags.

Nested fields use ``__`` in environment variables (``PICE_CLOUD__BASE_URL``); lists such as
``edges`` take JSON (``PICE_EDGES='[{"name": "e1", "url": "http://..."}]'``). Every field is
documented in ``docs/configuration.md``; ``pice up`` writes this schema as YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from pice.edge_protocol import MAX_CANDIDATES, MAX_POINT_WORDS
from pice.logs import LogFormat
from pice.security import OptionalSecret, read_secret_lines, secret_or_file, stripped_secret
from pice.settings import YamlSettings, load_yaml_settings
from pice.tracing import TracingSettings
from pice_gateway.placement.rate import RateFrom
from pice_gateway.placement.registry import PLACEMENT_POLICIES
from pice_gateway.upstream_http import PoolLimits
from pice_gateway.upstream_http import Timeouts as TransportTimeouts


class Timeouts(BaseModel):
    """Upstream timeouts in seconds; ``read`` is the longest silence tolerated between bytes.

    ``write`` is accepted for older configuration files and not applied: the client sends a
    request's body whole before it reads, and a body the upstream never takes ends in the
    read timeout."""

    connect: float = 5.0
    read: float = 120.0
    write: float = 30.0
    pool: float = 5.0

    def for_transport(self) -> TransportTimeouts:
        return TransportTimeouts(connect=self.connect, read=self.read, pool=self.pool)


# Idle upstream connections are dropped after this long: under uvicorn's 5 s keep-alive (vLLM's
# and the edge agent's servers), so the gateway never sends a request on a connection the
# server is closing at that instant (the soak saw one such ReadError in 8 000 requests).
KEEPALIVE_EXPIRY_SECONDS = 4.0


def pool_limits(max_connections: int) -> PoolLimits:
    """Connection pool limits of an upstream client (idle connections kept up to the same)."""
    return PoolLimits(max_connections=max_connections, keepalive_seconds=KEEPALIVE_EXPIRY_SECONDS)


class CloudSettings(BaseModel):
    """The cloud LLM: any OpenAI-compatible server (vLLM, or a ``pice edge serve`` stand-in)."""

    base_url: str = "http://127.0.0.1:8100/v1"
    model: str = "qwen2.5-coder-1.5b-instruct"
    # The model name of the outline-only sketch requests (a sketcher LoRA the cloud serves
    # beside ``model``, e.g. vLLM's ``--lora-modules pice-sketcher=...``); None: ``model``.
    # Direct answers, ``pice-cloud`` and the cloud's own expansions keep ``model``.
    sketch_model: str | None = None
    # ``sketch_model`` learnt the framed sketch (``pice tune data --role sketcher --frame``), so
    # ``progressive.frame`` left unset frames its sketches as it frames ``model``'s; False: it
    # learnt the outline alone, and they are not framed. ``pice up --sketch-lora`` sets it from
    # the adapter's training record.
    sketch_framed: bool = False
    # Sent as "Authorization: Bearer ..."; or read from ``api_key_file`` (its first line).
    api_key: OptionalSecret = None
    api_key_file: Path | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    # Connections open to the cloud at once: every stream in flight holds one (a default of
    # 100, httpx's, made the 101st concurrent stream wait ``timeouts.pool`` and fail with 503).
    max_connections: int = Field(default=1000, ge=1)
    # ``GET /ready`` asks the cloud ``GET /models`` at most this often (its answer is reused in
    # between), with this timeout: a probe every second from every replica must not load vLLM.
    ready_check_seconds: float = Field(default=5.0, ge=0)
    ready_timeout_seconds: float = Field(default=2.0, gt=0)

    @property
    def outline_model(self) -> str:
        """The model an outline-only sketch request names."""
        return self.sketch_model or self.model

    def extra_models(self) -> tuple[str, ...]:
        """Models beside ``model`` the cloud must serve (what ``/ready`` checks it lists)."""
        return (self.outline_model,) if self.outline_model != self.model else ()

    @model_validator(mode="after")
    def _key_from_file(self) -> CloudSettings:
        self.api_key = secret_or_file(self.api_key, self.api_key_file)
        return self


class _EdgeToken(BaseModel):
    """A bearer token for edge agents: given, or read from ``token_file`` (its first line)."""

    token: OptionalSecret = None
    token_file: Path | None = None

    @model_validator(mode="after")
    def _token_from_file(self) -> _EdgeToken:
        self.token = secret_or_file(self.token, self.token_file)
        return self


class EdgeEndpoint(_EdgeToken):
    """Where the gateway reaches one edge agent (an item of ``edges``).

    Not the agent's own settings (``edge_agent.settings.EdgeSettings``, what ``pice edge serve``
    reads): the name, URL and token the gateway uses to call it. ``token`` is the agent's
    ``api_token``; without one (nor ``token_file``) the gateway sends ``edge_client.token``.
    """

    name: str
    url: str


class EdgeClientSettings(_EdgeToken):
    """How the gateway talks to every edge agent.

    ``token`` / ``token_file``: the token of every edge that has none of its own (one shared
    secret for a fleet, e.g. PICE_EDGE_CLIENT__TOKEN).
    """

    # /v1/load is polled this often (seconds); the placement policy reads what it saw.
    poll_interval: float = Field(default=1.0, gt=0)
    timeouts: Timeouts = Field(
        default_factory=lambda: Timeouts(connect=2.0, read=60.0, write=10.0, pool=5.0)
    )
    # Connections open to each edge at once: every job in flight or queued there holds one.
    max_connections: int = Field(default=1000, ge=1)


class FleetSettings(BaseModel):
    """Edges that register themselves, and replicas that share what they know.

    Registration (``/v1/edges``) is on when ``edge_client.token`` is set: an edge proves it
    belongs to the fleet with that same token. ``edges`` configured statically never expire.
    """

    # What the gateway asks registered edges to heartbeat at, seconds.
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    # A registered edge silent for this long leaves (three missed heartbeats by default).
    expiry_seconds: float = Field(default=6.0, gt=0)
    # Shared membership and in-flight counts for several replicas ("redis://host:6379/0");
    # None keeps them in this process (one gateway). Needs the ``redis`` package.
    redis_url: OptionalSecret = None
    # Prefix of every key this fleet writes, so several fleets can share one Redis.
    key_prefix: str = "pice:"
    # How often a replica reads the members and the other replicas' in-flight counts, and
    # publishes its own: the staleness of a join, leave or count seen on another replica.
    sync_seconds: float = Field(default=0.5, gt=0)
    # A replica's published counts expire this long after its last sync (a dead replica's
    # in-flight stops weighing on placement after at most this long).
    replica_ttl_seconds: float = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> FleetSettings:
        if self.expiry_seconds <= self.heartbeat_seconds:
            raise ValueError("fleet.expiry_seconds must exceed fleet.heartbeat_seconds")
        if self.replica_ttl_seconds <= self.sync_seconds:
            raise ValueError("fleet.replica_ttl_seconds must exceed fleet.sync_seconds")
        return self


class RateLimitSettings(BaseModel):
    """Per-key request limits (``pice_gateway.rate_limit``); off unless a rate is set."""

    # Requests per minute each API key may make to /v1 (a moving window); None = no limit.
    # Without API keys (a loopback gateway) the client's address is the bucket.
    requests_per_minute: int | None = Field(default=None, ge=1)
    # Where counts live, a ``limits`` storage URI: in-process by default (per replica);
    # "async+redis://host:6379" shares them between replicas (needs ``limits[async-redis]``).
    storage_uri: str = "async+memory://"


class CorsSettings(BaseModel):
    """CORS for browser front ends: off (no CORS headers) unless origins are listed."""

    # Exact origins ("https://chat.example.com"); ["*"] allows any (never with credentials).
    allow_origins: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "OPTIONS"])
    allow_headers: list[str] = Field(
        default_factory=lambda: ["authorization", "content-type", "x-request-id"]
    )
    allow_credentials: bool = False
    # Seconds a browser may cache a preflight answer.
    max_age: int = Field(default=600, ge=0)


class ModelNames(BaseModel):
    """The three model names the gateway serves."""

    auto: str = "pice"
    progressive: str = "pice-progressive"
    cloud: str = "pice-cloud"


class HedgingSettings(BaseModel):
    """Duplicating a late point on another edge (``placement.hedging``)."""

    # Off by default: a hedge spends edge capacity on a duplicate, worth it only with unequal
    # or unreliable edges.
    enabled: bool = False
    # A point still unfinished ``factor`` × its expected finish + ``floor_seconds`` after it was
    # placed is duplicated on another edge with a free slot; the first to finish wins.
    factor: float = Field(default=2.0, gt=0)
    floor_seconds: float = Field(default=2.0, ge=0)


class CloudOverflowSettings(BaseModel):
    """Points to the cloud when it would finish them well before the chosen edge
    (``placement.overflow``)."""

    # Off by default: it spends cloud time, which every request's sketch needs, on points.
    enabled: bool = False
    # At most this many points of this gateway expand on the cloud at once.
    max_points: int = Field(default=2, ge=1)
    # The cloud takes a point when its expected finish × margin is below the edge's.
    margin: float = Field(default=1.5, ge=1.0)


class AdmissionSettings(BaseModel):
    """Bounded work in the gateway: past these, a request is refused with 429."""

    # Progressive runs (``pice`` and ``pice-progressive``) in flight at once; None = no cap.
    max_progressive_requests: int | None = Field(default=64, ge=1)
    # What ``Retry-After`` tells a refused client, seconds.
    retry_after_seconds: int = Field(default=1, ge=1)


class LoadDecisionSettings(BaseModel):
    """The per-request decision from load (``pice_gateway.load_decision``)."""

    # Off by default: every request takes the path its model and the router chose.
    enabled: bool = False
    # The cloud's decode rate for one answer, tokens/s; None turns the "edges much slower than
    # the cloud" rule off (the gateway does not measure the cloud's rate).
    cloud_tokens_per_second: float | None = Field(default=None, gt=0)
    # Model ``pice`` answers from the cloud when the fastest edge's expected finish of one
    # point exceeds this many times the cloud writing the whole answer alone.
    edge_slowdown: float = Field(default=2.0, gt=0)
    # With this many requests of this gateway on the cloud, the sketch is asked for
    # ``busy_max_points`` points; None turns the rule off.
    cloud_busy_requests: int | None = Field(default=None, ge=1)
    busy_max_points: int = Field(default=4, ge=1, le=32)


class ProgressiveSettings(BaseModel):
    """Knobs of the progressive path (sketch, expansion, failover)."""

    max_points: int = Field(default=8, ge=1, le=32)
    # Token budget of a sketch when the cloud must write an outline (``pice-progressive``).
    sketch_max_tokens: int = Field(default=160, ge=16)
    # Budget of the sketch stream under ``pice``, where it may turn into a direct answer;
    # a request's own max_tokens wins.
    direct_max_tokens: int = Field(default=512, ge=16)
    sketch_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # Per point; a request's max_tokens lowers it (see ``progressive.spec``). With
    # ``point_words`` set, a point may have at least the tokens that many words take.
    expansion_max_tokens: int = Field(default=96, ge=1)
    # The length, in words, the expansion prompt asks each point's body for (edges and the
    # cloud alike); None: the edge prompt's own, 40 (what the bundled and tuned models know).
    # Longer bodies make longer, slower answers; a request's ``pice.point_words`` overrides it.
    point_words: int | None = Field(default=None, ge=8, le=MAX_POINT_WORDS)
    # The outline-only sketch also writes an opening line (shown first) and a closing sentence
    # (shown after the last point), as a whole answer has them; a framed sketch that turns to
    # prose is answered by the cloud instead. None: framed unless ``cloud.sketch_model`` names
    # a sketcher adapter trained on unframed outlines (``cloud.sketch_framed`` false).
    # ``pice.frame`` overrides it.
    frame: bool | None = None
    expansion_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # An edge job admitted by the edge (its ``start`` event) that then sends no event for this
    # long loses its points to another edge, and the edge is marked down.
    edge_stall_seconds: float = Field(default=20.0, gt=0)
    # Before admission a job is queued on the edge, which is not a stall: it may wait this long
    # (from the request, connecting included) for its ``start`` event.
    edge_queue_seconds: float = Field(default=120.0, gt=0)
    # Which edge expands each point: a name registered in ``placement.registry``
    # (``eft``, ``least-loaded``, ``round-robin``, ``eft-length``). ``eft`` by default: on
    # unequal edges it cut p50 by about 20% against ``least-loaded`` on the real testbed (p95
    # 6% to 28% by the configuration; the one cloud core sets the tail there) and never lost
    # in the simulator; on equal edges it is within 1% (docs/benchmarks.md, "Scheduling").
    placement: str = "eft"
    # The rate curve the estimates use (eft, hedging, overflow, the ``pice`` object): "points",
    # fitted to how long the points placed on each edge took once 8 have finished there, else
    # the reported decode rate's; "decode", the reported decode rate's only (the estimator
    # before 2026-12-05). On the AVX2 testbed eft's p50/p95 were 0.89x/0.96x with "points"
    # (intervals include 1); in ``pice sim``, whose decode rates are exact, "decode" is better.
    # See ``placement.rate`` and docs/benchmarks.md, "Scheduling".
    placement_rate: RateFrom = "points"
    # Tokens a point is expected to decode before any finished (``eft`` reads a running mean of
    # the points edges finish, starting here, capped by the request's per-point budget).
    expected_point_tokens: float = Field(default=32.0, gt=0)
    # Candidates per point after the first when the edge has spare slots (1 = no ensemble);
    # a request's ``pice.candidates`` overrides it. See ``placement.candidates``. Off by
    # default: on a CPU edge whose cores are already busy, free sequence slots are not spare
    # compute, and k = 3 made answers 49% slower end to end (docs/benchmarks.md, "Ensemble").
    ensemble_candidates: int = Field(default=1, ge=1, le=MAX_CANDIDATES)
    # The most a point's extra candidates may slow every sequence on its edge, predicted from
    # the edge's fitted rate curve (0.05 = 5%); k shrinks until it fits. Compute-bound edges
    # (CPUs) get one candidate, edges that batch nearly for free (GPUs) get k.
    ensemble_max_slowdown: float = Field(default=0.05, ge=0.0)
    # Sampling temperature of candidates 1..k-1 (candidate 0 keeps the request's own).
    ensemble_temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    # Let other edges each decode one more candidate of a point when its own edge gives it
    # fewer than ``ensemble_candidates`` (same room, compute and finish-time checks; a
    # different model's candidate is greedy, the same model's samples). See
    # ``placement.candidates``.
    ensemble_across_edges: bool = True
    # Stop the cloud's whole answer to a framed sketch that wrote prose once it repeats a
    # passage (a sentence or paragraph said twice in a row), at the end of that sentence,
    # instead of relaying the loop to the token budget (``pice_gateway.cloud_loops``); a
    # passage the conversation holds may repeat (the user asked for it).
    stop_cloud_loops: bool = True
    hedging: HedgingSettings = Field(default_factory=HedgingSettings)
    cloud_overflow: CloudOverflowSettings = Field(default_factory=CloudOverflowSettings)

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
    # Stop after an early block when the weights' exit head there is sure (most questions);
    # off: every question runs the whole encoder and the final head.
    early_exit: bool = True
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


class PlaygroundSettings(BaseModel):
    """The playground page (``GET /playground``): ask a question, watch PICE answer it."""

    # None: served only while ``host`` is a loopback address, since the page invites anyone who
    # can reach it to spend the models' time; true: served on any host (the API behind it still
    # wants a key when keys are set); false: never.
    enabled: bool | None = None


class GatewaySettings(YamlSettings):
    # env_ignore_empty: an empty variable (a Secret not filled in, PICE_API_KEYS="") counts as
    # unset, so the start-up check names the missing keys instead of a JSON parse error.
    model_config = SettingsConfigDict(
        env_prefix="PICE_", env_nested_delimiter="__", extra="ignore", env_ignore_empty=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Clients send "Authorization: Bearer <one of these>". Required off loopback (see
    # ``allow_insecure``). PICE_API_KEYS='["k1", "k2"]', or a file with one key per line.
    api_keys: list[SecretStr] = Field(default_factory=list)
    api_keys_file: Path | None = None
    # Serve a non-loopback host without API keys (logged as a WARNING at start-up).
    allow_insecure: bool = False
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    cloud: CloudSettings = Field(default_factory=CloudSettings)
    edges: list[EdgeEndpoint] = Field(
        default_factory=lambda: [EdgeEndpoint(name="edge-1", url="http://127.0.0.1:8101")]
    )
    edge_client: EdgeClientSettings = Field(default_factory=EdgeClientSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    models: ModelNames = Field(default_factory=ModelNames)
    progressive: ProgressiveSettings = Field(default_factory=ProgressiveSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    load_decision: LoadDecisionSettings = Field(default_factory=LoadDecisionSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    playground: PlaygroundSettings = Field(default_factory=PlaygroundSettings)
    # Log lines as text or one JSON object each, every one with its request id (``pice.logs``).
    log_format: LogFormat = "text"
    # OpenTelemetry traces (off; ``pice.tracing``).
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @field_validator("edges")
    @classmethod
    def _unique_edge_names(cls, edges: list[EdgeEndpoint]) -> list[EdgeEndpoint]:
        names = [edge.name for edge in edges]
        if len(names) != len(set(names)):
            raise ValueError(f"edge names must be unique: {names}")
        return edges

    @model_validator(mode="after")
    def _resolve_secrets(self) -> GatewaySettings:
        keys = [*self.api_keys]
        if self.api_keys_file is not None:
            keys += read_secret_lines(self.api_keys_file)
        self.api_keys = [key for key in map(stripped_secret, keys) if key is not None]
        for edge in self.edges:
            if edge.token is None:
                edge.token = self.edge_client.token
        return self


def load_settings(config: Path | None = None, **overrides: Any) -> GatewaySettings:
    """Settings from an optional YAML file, the environment and ``overrides`` (CLI flags)."""
    return load_yaml_settings(GatewaySettings, config, **overrides)
