"""The edge's side of the reverse channel (:mod:`pice.channel_protocol`): dial out, take work.

An edge behind NAT cannot be called, so it calls: for each ``dial_url`` it keeps one WebSocket
open to that gateway, says ``hello`` with its name, and from then on serves over it exactly what
the gateway would otherwise ask of its HTTP API. A ``job`` runs through the same code as
``POST /v1/expand`` (:func:`~edge_agent.api.expand.start_expand`), a ``load_query`` is answered
with what ``GET /v1/load`` says (:func:`~edge_agent.api.service.load_report`), so the two
transports cannot drift apart.

Cancellation: a ``cancel`` cancels the job's task, which leaves the job's ``async with`` block
and so frees its sequences and KV cells at the engine's next step, as a closed HTTP stream does.
A lost connection cancels every job it carried (the gateway has already failed them over).

Reconnection: whatever ends a connection (the gateway restarting, a network change, a refused
token), the dialler waits :func:`reconnect_delay` and dials again, forever; the delay grows to
``dial_backoff_max`` and resets once a connection was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from edge_agent.api.expand import start_expand
from edge_agent.api.service import load_report
from edge_agent.api.state import EdgeState
from pice.channel_protocol import (
    Cancel,
    Hello,
    Job,
    JobEvent,
    LoadQuery,
    LoadReport,
    Refused,
    connect_url,
    encode,
    parse_gateway_message,
)
from pice.edge_protocol import ErrorBody
from pice.errors import InvalidRequestError, PiceError
from pice.http.request_id import bound_request_id

logger = logging.getLogger(__name__)

# Keep-alive pings: they find a dead gateway (or a dropped NAT mapping) within about
# twice this, and their traffic keeps an idle connection's NAT mapping from expiring.
PING_INTERVAL = 20.0
# The first retry waits about this long; each failed attempt doubles it, up to the setting.
_FIRST_DELAY = 0.5

Send = Callable[[str], Awaitable[None]]


def reconnect_delay(
    attempt: int, cap: float, rng: Callable[[], float] = random.random, first: float = _FIRST_DELAY
) -> float:
    """Seconds to wait before dial ``attempt`` (0 = the first retry): exponential up to
    ``cap``, with the upper half jittered, so a fleet cut off together does not redial in step."""
    ceiling = min(cap, first * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * rng())


class ChannelSession:
    """What one connected channel runs: the gateway's jobs and load queries, until it closes."""

    def __init__(self, state: EdgeState, send: Send) -> None:
        self._state = state
        self._send = send
        self._jobs: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> int:
        return len(self._jobs)

    async def handle(self, frame: str | bytes) -> None:
        """Act on one frame from the gateway (never blocks on a job: each runs as a task)."""
        try:
            message = parse_gateway_message(frame)
        except ValueError as exc:
            logger.warning("channel: ignored a malformed message from the gateway: %s", exc)
            await self._refuse_malformed_job(frame, exc)
            return
        match message:
            case LoadQuery():
                await self._send(encode(LoadReport(id=message.id, load=load_report(self._state))))
            case Job():
                if message.id in self._jobs:
                    logger.warning("channel: job id %s is already running; ignored", message.id)
                    return
                task = asyncio.create_task(self._run(message), name=f"channel-job-{message.id}")
                self._jobs[message.id] = task
                task.add_done_callback(lambda _: self._jobs.pop(message.id, None))
            case Cancel():
                if (running := self._jobs.get(message.id)) is not None:
                    running.cancel()

    async def _refuse_malformed_job(self, frame: str | bytes, exc: ValueError) -> None:
        """A ``job`` whose request fails validation is refused with a 400, as
        ``POST /v1/expand`` answers that body, so the gateway's job does not wait for it."""
        try:
            raw = json.loads(frame)
        except ValueError:
            return
        if not (
            isinstance(raw, dict) and raw.get("type") == "job" and isinstance(raw.get("id"), str)
        ):
            return
        err = InvalidRequestError(f"invalid expand job: {exc}".splitlines()[0])
        body = ErrorBody(**err.to_body()["error"])
        await self._send(encode(Refused(id=raw["id"], status=err.status_code, error=body)))

    async def _run(self, job: Job) -> None:
        with bound_request_id(job.request.request_id):
            try:
                expand = start_expand(self._state, job.request)
            except PiceError as err:
                retry_after = err.headers().get("Retry-After")
                body = ErrorBody(**err.to_body()["error"])
                refused = Refused(
                    id=job.id, status=err.status_code, error=body, retry_after=retry_after
                )
                await self._send(encode(refused))
                return
            try:
                async with contextlib.aclosing(expand.events()) as events:
                    async for event in events:
                        frame = JobEvent(id=job.id, event=event.model_dump(mode="json"))
                        await self._send(encode(frame))
            finally:
                expand.close()

    async def aclose(self) -> None:
        """Cancel every job still running (the connection that asked for them is gone)."""
        tasks = list(self._jobs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve_channel(state: EdgeState, connection: ClientConnection, name: str) -> None:
    """Say hello on an open connection and serve it until it closes."""
    lock = asyncio.Lock()

    async def send(frame: str) -> None:
        # One frame at a time: job tasks and load answers share the socket.
        async with lock:
            await connection.send(frame)

    await send(encode(Hello(name=name)))
    session = ChannelSession(state, send)
    try:
        async for frame in connection:
            await session.handle(frame)
    finally:
        await session.aclose()


async def dial(
    state: EdgeState,
    gateway: str,
    name: str,
    token: str,
    backoff_max: float,
    address: str | None = None,
) -> None:
    """Keep a channel open to ``gateway`` forever (cancel the task to stop).

    With ``address``, connect to that IP rather than what the URL's host resolves to; the
    host name still goes in the ``Host`` header and, over TLS, in SNI and the certificate
    check (one replica of several behind one name, :func:`dial_each_address`).
    """
    url = connect_url(gateway)
    where = url if address is None else f"{url} at {address}"
    pinned: dict[str, Any] = {}
    if address is not None:
        pinned = {"host": address, "port": _port(url), "proxy": None}
    attempt = 0
    while True:
        try:
            async with connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=10,
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_INTERVAL,
                # A job's request is bounded by the gateway's body limit, far below this.
                max_size=16 * 1024 * 1024,
                **pinned,
            ) as connection:
                logger.info("channel to %s open as edge %s", where, name)
                attempt = 0
                await serve_channel(state, connection, name)
            logger.warning("channel to %s closed; dialling again", where)
        except InvalidStatus as exc:
            # 403: the token is wrong or the gateway accepts no channels (its log says which).
            # Retried all the same (a rotated secret may be fixed on the gateway's side).
            status = exc.response.status_code
            logger.error("gateway %s refused the channel: HTTP %d", where, status)
        except (OSError, TimeoutError, WebSocketException) as exc:
            logger.warning("channel to %s failed: %s: %s", where, type(exc).__name__, exc)
        delay = reconnect_delay(attempt, backoff_max)
        attempt += 1
        await asyncio.sleep(delay)


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "wss" else 80)


Resolver = Callable[[str, int], Awaitable[set[str]]]


async def resolve_all(host: str, port: int) -> set[str]:
    """Every address ``host`` resolves to (a headless Service: one per ready replica)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return {str(info[4][0]) for info in infos}


async def dial_each_address(
    state: EdgeState,
    gateway: str,
    name: str,
    token: str,
    backoff_max: float,
    every: float,
    resolve: Resolver | None = None,
) -> None:
    """One channel per address ``gateway``'s host resolves to, re-resolved every ``every``
    seconds: replicas that appear are dialled, channels to ones gone are closed.

    Several gateway replicas each place work only on the edges connected to them, so an edge
    behind NAT must reach every replica; a Kubernetes headless Service resolves to all of
    them, where a plain Service would hand the edge's one connection to one replica.
    """
    url = connect_url(gateway)
    host = urlsplit(url).hostname or ""
    channels: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            try:
                addresses = await (resolve or resolve_all)(host, _port(url))
            except OSError as exc:  # DNS away: keep the channels there are
                logger.warning("could not resolve %s: %s", host, exc)
                addresses = set(channels)
            for address in channels.keys() - addresses:
                logger.info(
                    "gateway %s no longer resolves to %s: closing its channel", host, address
                )
                channels.pop(address).cancel()
            for address in sorted(addresses - channels.keys()):
                channels[address] = asyncio.create_task(
                    dial(state, gateway, name, token, backoff_max, address),
                    name=f"edge-dial-{address}",
                )
            await asyncio.sleep(every)
    finally:
        for task in channels.values():
            task.cancel()
        await asyncio.gather(*channels.values(), return_exceptions=True)


async def dial_all(state: EdgeState, loading: asyncio.Task[None]) -> None:
    """Once the engine is ready, dial every gateway in ``settings.dial_url`` (cancel to stop)."""
    settings = state.settings
    await asyncio.shield(loading)  # shielded: stopping the dialler must not stop the load
    if state.load_error is not None:
        logger.error("not dialling any gateway: %s", state.load_error)
        return
    if settings.api_token is None:  # the settings refuse this; kept for the type checker
        return
    token = settings.api_token.get_secret_value()
    name = settings.edge_name()
    backoff = settings.dial_backoff_max
    if settings.dial_each_address:
        every = settings.dial_resolve_seconds
        await asyncio.gather(
            *(
                dial_each_address(state, url, name, token, backoff, every)
                for url in settings.dial_url
            )
        )
    else:
        await asyncio.gather(*(dial(state, url, name, token, backoff) for url in settings.dial_url))
