"""``GET /v1/edges/connect``: where an edge behind NAT opens its reverse channel.

The edge authenticates with the fleet's shared edge token (``edge_client.token``, the secret
the gateway sends to the edges it calls; compared in constant time). A gateway without that
token accepts no channel (403), one given a wrong token answers 401; both before the upgrade,
so the edge's dialler sees a plain HTTP status and says which.

Once accepted, the edge's ``hello`` names it and the gateway asks its load once (timing the
round trip, as the poller does) before it joins the registry, so placement sees it up and
with its slots from the first request on. When the connection ends the edge leaves: its
running jobs fail over (:mod:`pice_gateway.channel`), and a later dial joins it again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError

from pice.channel_protocol import CLOSE_BAD_HELLO, CLOSE_POLICY, CONNECT_PATH, Hello
from pice.errors import AuthenticationError, PermissionDeniedError, PiceError
from pice.http.auth import bearer_auth
from pice_gateway.channel import ChannelEdgeClient
from pice_gateway.edges import Edge, EdgeRegistry
from pice_gateway.state import GatewayState

logger = logging.getLogger(__name__)

# How long an accepted connection may take to say hello and answer the first load query.
HELLO_SECONDS = 10.0

router = APIRouter()


async def _refuse(websocket: WebSocket, err: PiceError) -> None:
    """Refuse the upgrade: a close before ``accept`` is an HTTP 403 to the client.

    Not ``send_denial_response`` with the error's own status and body: uvicorn's WebSocket
    protocol logs every such response as an ASGI error ("returned without completing
    handshake"), and a misconfigured edge retries for ever. The reason goes to this log.
    """
    logger.warning("refused an edge channel from %s: %s", _peer(websocket), err.message)
    await websocket.close(CLOSE_POLICY, err.message)


async def _authenticate(websocket: WebSocket, state: GatewayState) -> bool:
    token = state.settings.edge_client.token
    if token is None:
        await _refuse(
            websocket,
            PermissionDeniedError(
                "This gateway accepts no edge channels: set edge_client.token (the fleet's "
                "edge token) to let edges dial in."
            ),
        )
        return False
    try:
        await bearer_auth([token])(websocket)
    except AuthenticationError as err:
        await _refuse(websocket, err)
        return False
    return True


def _peer(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client is not None else "?"


@router.websocket(CONNECT_PATH)
async def connect(websocket: WebSocket) -> None:
    state = websocket.app.state.gateway
    assert isinstance(state, GatewayState), "the gateway lifespan has not run"
    if not await _authenticate(websocket, state):
        return
    await websocket.accept()
    try:
        hello = Hello.model_validate_json(
            await asyncio.wait_for(websocket.receive_text(), HELLO_SECONDS)
        )
    except (TimeoutError, ValidationError) as exc:
        logger.warning("edge channel from %s sent no valid hello: %s", _peer(websocket), exc)
        await websocket.close(CLOSE_BAD_HELLO, "expected a hello message first")
        return
    await _serve(websocket, hello.name, state.edges)


async def _serve(websocket: WebSocket, name: str, registry: EdgeRegistry) -> None:
    client = ChannelEdgeClient(name)
    serving = asyncio.create_task(client.serve(websocket), name=f"channel-{name}")
    try:
        started = time.monotonic()
        try:
            load = await asyncio.wait_for(client.load(), HELLO_SECONDS)
        except (TimeoutError, PiceError) as exc:
            logger.warning("edge %s dialled in but did not report its load: %s", name, exc)
            return
        edge = Edge(client)
        edge.record_load(load, time.monotonic() - started)
        if name in registry:
            logger.warning("edge %s dialled in again: the new channel replaces the old", name)
        registry.join(edge)
        logger.info("edge %s joined over a channel from %s", name, _peer(websocket))
        await serving
    finally:
        # The connection ended (or the gateway is stopping): fail what ran on it over, and
        # take the edge out of placement unless a newer channel of the same name replaced it.
        await client.aclose()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        if name in registry and registry.client(name) is client:
            registry.leave(name)
