"""Request and event models of the edge agent's own endpoints (see docs/edge-api.md).

They are the shared wire protocol, :mod:`pice.edge_protocol`, typed once for this agent, the
gateway that calls it and the test fakes; this module keeps the agent's own import path.
"""

from __future__ import annotations

from pice.edge_protocol import (
    MAX_CANDIDATES,
    MAX_POINTS,
    DeltaEvent,
    DoneEvent,
    ErrorBody,
    ErrorEvent,
    ExpandEvent,
    ExpandRequest,
    LoadResponse,
    PointDoneEvent,
    StartEvent,
)

__all__ = [
    "MAX_CANDIDATES",
    "MAX_POINTS",
    "DeltaEvent",
    "DoneEvent",
    "ErrorBody",
    "ErrorEvent",
    "ExpandEvent",
    "ExpandRequest",
    "LoadResponse",
    "PointDoneEvent",
    "StartEvent",
]
