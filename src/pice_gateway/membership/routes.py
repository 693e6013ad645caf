"""``/v1/edges``: edges register, heartbeat and leave (docs/edge-api.md, "Membership").

The caller must present the fleet's edge token (``edge_client.token``), the secret the gateway
already uses to call its edges: whoever holds it is trusted as an edge, and no one else can
add, move or remove one. Without a token configured, registration is off (404), since an open
endpoint would let anyone on the network point the gateway's traffic at their own server.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import SecretStr

from pice.edge_protocol import EDGE_NAME_PATTERN, EdgeRegistration, RegistrationAck
from pice.errors import AuthenticationError, NotFoundError
from pice_gateway.membership.fleet import Fleet
from pice_gateway.state import gateway_state

EdgeName = Annotated[str, Path(pattern=EDGE_NAME_PATTERN)]


def fleet_of(request: Request) -> Fleet:
    return gateway_state(request).fleet


def _edge_token(token: SecretStr | None) -> Any:
    """A dependency accepting only ``Authorization: Bearer <token>`` (constant-time compare)."""
    secret = token.get_secret_value().encode() if token is not None else None

    async def check(request: Request) -> None:
        if secret is None:
            raise NotFoundError(
                "Edge registration is disabled on this gateway: set edge_client.token "
                "(the fleet's edge token) to enable it.",
                code="edge_registration_disabled",
            )
        scheme, _, supplied = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not supplied.strip():
            raise AuthenticationError(
                "Missing edge token. Send 'Authorization: Bearer <edge token>'.",
                code="missing_api_key",
            )
        if not hmac.compare_digest(supplied.strip().encode(), secret):
            raise AuthenticationError("Incorrect edge token provided.")

    return check


def membership_router(token: SecretStr | None) -> APIRouter:
    router = APIRouter(prefix="/v1/edges", dependencies=[Depends(_edge_token(token))])

    @router.post("")
    async def register(body: EdgeRegistration, request: Request) -> RegistrationAck:
        return await fleet_of(request).register(body)

    @router.post("/{name}/heartbeat")
    async def heartbeat(name: EdgeName, request: Request) -> RegistrationAck:
        return await fleet_of(request).heartbeat(name)

    @router.delete("/{name}", status_code=204)
    async def leave(name: EdgeName, request: Request) -> Response:
        await fleet_of(request).leave(name)
        return Response(status_code=204)

    @router.get("")
    async def members(request: Request) -> dict[str, Any]:
        """Every edge this replica places on, with its registration when it registered."""
        state = gateway_state(request)
        joined = state.fleet.members()
        data = []
        for status in state.edges.snapshot():
            member = joined.get(status.name)
            data.append(
                {
                    "name": status.name,
                    "static": member is None,
                    "up": status.up,
                    "in_flight": status.in_flight,
                    "remote_in_flight": status.remote_in_flight,
                    "registration": None if member is None else member.model_dump(mode="json"),
                }
            )
        return {"object": "list", "data": data}

    return router
