"""Joining gateways: register once the model is loaded, heartbeat, leave on shutdown.

One :class:`GatewayLink` per gateway in ``join_url`` runs as a background task of the agent's
lifespan. It registers (``POST /v1/edges``), then heartbeats at the interval the gateway's
answer asks for. A gateway that is down is retried with a capped exponential backoff
(:class:`Backoff`), so a fleet of edges does not hammer a gateway that is restarting; a heartbeat
answered 404 (the gateway forgot the edge: it expired, or the gateway restarted without a
shared store) registers again. At shutdown :meth:`GatewayLink.leave` says goodbye, so placement
stops at once instead of after the expiry.

The edge authenticates with its own ``api_token``: the fleet's edge token, the same secret the
gateway presents when it calls the edge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr, ValidationError

from pice.edge_protocol import EdgeRegistration, RegistrationAck

logger = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Delays between failed attempts: ``initial`` doubling up to ``cap``; reset on success."""

    initial: float = 0.5
    cap: float = 10.0
    _next: float = field(default=0.0, init=False)

    def next(self) -> float:
        self._next = self.initial if self._next == 0.0 else min(self.cap, self._next * 2)
        return self._next

    def reset(self) -> None:
        self._next = 0.0


class GatewayRefused(Exception):
    """The gateway answered a registration or heartbeat with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


class GatewayLink:
    """This edge's membership of the gateway at ``gateway_url``.

    ``registration`` is called at each (re-)registration, so the capabilities sent carry the
    edge's latest measured speed.
    """

    def __init__(
        self,
        gateway_url: str,
        registration: Callable[[], EdgeRegistration],
        token: SecretStr,
        *,
        timeout: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.gateway_url = gateway_url
        self._registration = registration
        self._http = httpx.AsyncClient(
            base_url=gateway_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token.get_secret_value()}"},
        )
        self._backoff = backoff or Backoff()
        self.registered: str | None = None  # the name it is registered under

    async def _ack(self, response: httpx.Response) -> RegistrationAck:
        if response.status_code != 200:
            raise GatewayRefused(response.status_code, _message(response))
        try:
            return RegistrationAck.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise GatewayRefused(response.status_code, f"malformed answer: {exc}") from exc

    async def register(self) -> RegistrationAck:
        member = self._registration()
        ack = await self._ack(
            await self._http.post("/v1/edges", json=member.model_dump(mode="json"))
        )
        self.registered = member.name
        if ack.reachable is False:
            logger.warning(
                "gateway %s registered edge %s but cannot reach it at %s: check advertise_url",
                self.gateway_url,
                member.name,
                member.url,
            )
        else:
            logger.info("registered with gateway %s as %s", self.gateway_url, member.name)
        return ack

    async def heartbeat(self) -> RegistrationAck | None:
        """The gateway's answer; None when it no longer knows this edge (register again)."""
        assert self.registered is not None
        response = await self._http.post(f"/v1/edges/{self.registered}/heartbeat")
        if response.status_code == 404:
            logger.info("gateway %s forgot this edge: registering again", self.gateway_url)
            self.registered = None
            return None
        return await self._ack(response)

    async def run(self) -> None:
        """Register and heartbeat until cancelled; failures are retried with backoff."""
        failing = False
        while True:
            try:
                ack = await (self.register() if self.registered is None else self.heartbeat())
            except (httpx.HTTPError, GatewayRefused) as exc:
                if not failing:
                    logger.warning("gateway %s: %s (retrying)", self.gateway_url, exc)
                failing = True
                await asyncio.sleep(self._backoff.next())
                continue
            except Exception:
                # A bug, not the gateway's answer: retried like a failure, never the end of
                # the heartbeats (the gateway would expire a healthy edge).
                logger.exception("gateway %s: registration failed (retrying)", self.gateway_url)
                failing = True
                await asyncio.sleep(self._backoff.next())
                continue
            if ack is None:
                continue
            if failing:
                logger.info("gateway %s answers again", self.gateway_url)
            failing = False
            self._backoff.reset()
            await asyncio.sleep(ack.heartbeat_seconds)

    async def leave(self) -> None:
        """Leave the gateway (best effort: an unreachable one expires this edge instead)."""
        name, self.registered = self.registered, None
        if name is None:
            return
        try:
            response = await self._http.delete(f"/v1/edges/{name}")
        except httpx.HTTPError as exc:
            logger.warning("could not leave gateway %s: %s", self.gateway_url, exc)
            return
        if response.status_code == 204:
            logger.info("left gateway %s", self.gateway_url)
        else:
            logger.warning("gateway %s refused the leave: %s", self.gateway_url, _message(response))

    async def aclose(self) -> None:
        await self._http.aclose()
