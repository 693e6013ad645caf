"""Readiness: is this gateway able to answer now? The cloud must answer and an edge must be up.

``GET /ready`` is what a load balancer or a Kubernetes readiness probe asks, often every second
from every replica. The edges' side costs nothing (the registry's poller already knows which
are up); the cloud's side is a ``GET {cloud.base_url}/models`` whose result is kept for
``cloud.ready_check_seconds``, with a short timeout of its own, so a probe every second costs
vLLM one cheap request every few seconds per replica, never a chat completion. Concurrent
probes share one check in flight instead of each sending their own.

When the cloud must serve more than ``cloud.model`` (a sketcher adapter named by
``cloud.sketch_model``), the same answer is read for those names too: a vLLM started without its
``--lora-modules`` still answers ``/models``, and would otherwise fail only the first outline.

``/health`` stays a liveness answer (the process serves HTTP): a cloud that is down must take a
replica out of the load balancer, not get it restarted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pice.errors import UpstreamError
from pice_gateway.upstream_http import UpstreamClient


@dataclass(frozen=True)
class CloudCheck:
    """One answer of the cloud to ``GET /models``: ``problem`` is None when it answered 2xx."""

    problem: str | None
    checked_at: float

    @property
    def ok(self) -> bool:
        return self.problem is None


def unlisted_models(body: bytes, expected: tuple[str, ...]) -> str | None:
    """What is wrong with a ``GET /models`` answer that must list ``expected``, or ``None``."""
    try:
        listed = [str(card["id"]) for card in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        return "cloud answered GET /models with no OpenAI model list"
    missing = [name for name in expected if name not in listed]
    if not missing:
        return None
    return (
        f"cloud does not serve {', '.join(map(repr, missing))} (cloud.sketch_model); "
        f"it lists {', '.join(map(repr, listed)) or 'nothing'}"
    )


class CloudProbe:
    """The cloud's readiness, checked at most once per ``interval`` seconds.

    The cached result is the core (:meth:`due`, :meth:`record`); :meth:`check` is the thin
    async part that sends the request when the cached one is too old.
    """

    def __init__(
        self,
        client: UpstreamClient,
        *,
        interval: float,
        timeout: float,
        expected_models: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        # Model names the list must hold; empty: any 2xx answer will do (``cloud.model`` is
        # not checked, as before: a cloud behind a router may list other names for it).
        self._expected = expected_models
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._last: CloudCheck | None = None
        self._lock = asyncio.Lock()

    def due(self) -> bool:
        """True when there is no result yet, or the last is older than ``interval``."""
        return self._last is None or self._clock() - self._last.checked_at >= self._interval

    def record(self, problem: str | None) -> CloudCheck:
        self._last = CloudCheck(problem, self._clock())
        return self._last

    async def check(self) -> CloudCheck:
        if not self.due():
            assert self._last is not None
            return self._last
        async with self._lock:
            # Another probe may have refreshed it while this one waited for the lock.
            if not self.due():
                assert self._last is not None
                return self._last
            return self.record(await self._ask())

    async def _ask(self) -> str | None:
        try:
            # Relative to the client's base URL (``.../v1/``): the OpenAI model list, which
            # vLLM and the edge agent serve without touching the model.
            async with (
                asyncio.timeout(self._timeout),
                self._client.open("GET", "models") as response,
            ):
                if not 200 <= response.status < 300:
                    return f"cloud answered {response.status} to GET /models"
                if not self._expected:
                    return None
                return unlisted_models(await response.read(), self._expected)
        except TimeoutError:
            return "cloud unreachable: it did not answer in time"
        except UpstreamError as exc:
            cause = exc.__cause__
            return f"cloud unreachable: {type(cause if cause is not None else exc).__name__}"


def readiness(cloud: CloudCheck, edges: dict[str, bool]) -> tuple[bool, dict[str, Any]]:
    """Whether the gateway is ready, and the ``/ready`` body saying what is missing if not.

    ``edges`` maps each edge's name to whether it is up (ready to take points).
    """
    missing: list[str] = []
    if not cloud.ok:
        missing.append("cloud")
    if not any(edges.values()):
        missing.append("edge")
    body: dict[str, Any] = {
        "status": "not ready" if missing else "ready",
        "cloud": {"up": cloud.ok, **({"problem": cloud.problem} if cloud.problem else {})},
        "edges": edges,
    }
    if missing:
        body["missing"] = missing
    return not missing, body
