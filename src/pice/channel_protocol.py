"""The reverse channel: an edge behind NAT dials the gateway and its work comes back that way.

One WebSocket per edge per gateway replica, opened by the edge (``GET /v1/edges/connect``,
``Authorization: Bearer <fleet edge token>``), carries everything the gateway would otherwise
send to the edge's HTTP API (docs/edge-api.md), so the edge needs no inbound port:

    edge -> gateway   hello        once, first: the name the edge is placed under
    gateway -> edge   load_query   what ``GET /v1/load`` asks (the registry's poller sends it)
    edge -> gateway   load         the answer, with the query's ``id``: a ``LoadResponse``
    gateway -> edge   job          what ``POST /v1/expand`` sends: an ``ExpandRequest``
    edge -> gateway   event        one event of that job: an ``ExpandEvent`` as on the SSE stream
    edge -> gateway   refused      the job never started: what would have been an error status
    gateway -> edge   cancel       the client left: stop the job and free its KV cells

Many jobs run over the one socket at once, each under the ``id`` the gateway gave it. A job's
stream ends with its ``done`` or ``error`` event (or ``refused``); closing the socket ends them
all, which the gateway treats as a broken connection (failover, the edge marked down).

Every message is one JSON text frame, typed here once for both sides; an unknown ``type`` is
skipped, not refused, so either side may add messages without breaking the other.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, Field, TypeAdapter

from pice.edge_protocol import ErrorBody, ExpandRequest, LoadResponse

CONNECT_PATH: Final = "/v1/edges/connect"
PROTOCOL_VERSION: Final = 1

# WebSocket close codes (RFC 6455 section 7.4): 1008 is "policy violation", which the gateway
# uses for a refused token; 4000-4999 are the application's own.
CLOSE_POLICY: Final = 1008
CLOSE_REPLACED: Final = 4001  # another connection joined under the same edge name
CLOSE_BAD_HELLO: Final = 4002


class Hello(BaseModel):
    """The edge's first message: who it is. Its load follows as the answer to a query."""

    type: Literal["hello"] = "hello"
    name: str = Field(min_length=1, max_length=128)
    version: int = PROTOCOL_VERSION


class LoadQuery(BaseModel):
    type: Literal["load_query"] = "load_query"
    id: int


class LoadReport(BaseModel):
    type: Literal["load"] = "load"
    id: int
    load: LoadResponse


class Job(BaseModel):
    type: Literal["job"] = "job"
    id: str
    # Its ``request_id`` (the gateway's ``x-request-id``) stamps the edge's log lines.
    request: ExpandRequest


class JobEvent(BaseModel):
    # The event stays a plain object here: the gateway validates it with the SSE path's own
    # parser (``parse_expand_event``), so both transports accept and refuse the same events.
    type: Literal["event"] = "event"
    id: str
    event: dict[str, Any]


class Refused(BaseModel):
    """A job the edge would have answered with an error status (429 full, 400 too long, 503)."""

    type: Literal["refused"] = "refused"
    id: str
    status: int
    error: ErrorBody
    retry_after: str | None = None


class Cancel(BaseModel):
    type: Literal["cancel"] = "cancel"
    id: str


EdgeMessage = Hello | LoadReport | JobEvent | Refused
GatewayMessage = LoadQuery | Job | Cancel

_EDGE: TypeAdapter[EdgeMessage] = TypeAdapter(Annotated[EdgeMessage, Field(discriminator="type")])
_GATEWAY: TypeAdapter[GatewayMessage] = TypeAdapter(
    Annotated[GatewayMessage, Field(discriminator="type")]
)
_EDGE_TYPES = frozenset({"hello", "load", "event", "refused"})
_GATEWAY_TYPES = frozenset({"load_query", "job", "cancel"})


def encode(message: BaseModel) -> str:
    return message.model_dump_json()


def _object(frame: str | bytes) -> dict[str, Any]:
    data = json.loads(frame)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def parse_edge_message(frame: str | bytes) -> EdgeMessage | None:
    """What the gateway read; ``None`` for a type it does not know.

    Raises :class:`ValueError` (a :class:`pydantic.ValidationError` among them) for a frame
    that is not a JSON object, or a known type with missing or mistyped fields.
    """
    data = _object(frame)
    return _EDGE.validate_python(data) if data.get("type") in _EDGE_TYPES else None


def parse_gateway_message(frame: str | bytes) -> GatewayMessage | None:
    """What the edge read; ``None`` for a type it does not know (see :func:`parse_edge_message`)."""
    data = _object(frame)
    return _GATEWAY.validate_python(data) if data.get("type") in _GATEWAY_TYPES else None


def connect_url(gateway: str) -> str:
    """The channel's WebSocket URL for a gateway given by its base URL.

    ``https://gw.example:8080`` becomes ``wss://gw.example:8080/v1/edges/connect`` (``http``
    gives ``ws``); a ``ws://`` or ``wss://`` URL with a path is used as it is, so a gateway
    behind a proxy that rewrites paths can still be reached.
    """
    url = gateway.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"dial URL {gateway!r} has no scheme (http://, https://, ws://, wss://)")
    scheme = scheme.lower()
    if scheme in ("ws", "wss"):
        return url if "/" in rest else url + CONNECT_PATH
    if scheme in ("http", "https"):
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{CONNECT_PATH}"
    raise ValueError(f"dial URL {gateway!r}: scheme must be http, https, ws or wss")
