"""Helpers of the membership and replica tests: gateways with registration on, edges joining."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from pice_gateway.app import create_app
from pice_gateway.settings import GatewaySettings
from tests.gateway.conftest import settings_for
from tests.gateway.fakes import CloudScript, EdgeScript, fake_cloud, fake_edge, serve

TOKEN = "fleet-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXPECTED_POINT = "{n}. **{title}**: Body of point {n} from {edge}.\n"
# What the fake cloud writes for a point no edge could take (every edge busy or down).
CLOUD_POINT = "{n}. **{title}**: Expanded by the cloud.\n"
TITLES = ("Alpha point", "Beta point", "Gamma point")

# Fast membership clocks, so that a sync happens within a test's patience. Expiry stays long
# (the tests' edges do not heartbeat); the expiry tests shorten it.
FAST_FLEET = {
    "heartbeat_seconds": 0.1,
    "expiry_seconds": 30.0,
    "sync_seconds": 0.05,
    "replica_ttl_seconds": 0.5,
}


def fleet_settings(
    cloud_url: str, edges: dict[str, str] | None = None, **overrides: Any
) -> GatewaySettings:
    """A gateway with registration on (the fleet token) and fast membership clocks."""
    fleet = {**FAST_FLEET, **overrides.pop("fleet", {})}
    edge_client = {"poll_interval": 0.1, "token": TOKEN, **overrides.pop("edge_client", {})}
    return settings_for(cloud_url, edges or {}, fleet=fleet, edge_client=edge_client, **overrides)


def registration(name: str, url: str) -> dict[str, Any]:
    return {"name": name, "url": url, "capabilities": {"model": "fake", "max_sequences": 16}}


def register(gateway: str, name: str, url: str, headers: dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(gateway + "/v1/edges", json=registration(name, url), headers=headers)


def leave(gateway: str, name: str) -> httpx.Response:
    return httpx.delete(f"{gateway}/v1/edges/{name}", headers=AUTH)


def members(gateway: str) -> dict[str, dict[str, Any]]:
    """The edges gateway places on (``GET /v1/edges``) by name."""
    body = httpx.get(gateway + "/v1/edges", headers=AUTH).json()
    return {entry["name"]: entry for entry in body["data"]}


def until(
    condition: Callable[[], bool],
    timeout: float = 20.0,
    what: str = "condition",
    show: Callable[[], object] | None = None,
) -> None:
    """Wait for ``condition`` (a correctness wait with a generous bound, not a speed check);
    ``show`` says what was seen instead, when it never held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            seen = f" (last seen: {show()!r})" if show is not None else ""
            raise AssertionError(f"{what} never held within {timeout}s{seen}")
        time.sleep(0.02)


def ask(gateway: str, timeout: float = 30.0) -> tuple[str, dict[str, Any]]:
    """One ``pice-progressive`` answer (text and pice report) from ``gateway``."""
    body = {
        "model": "pice-progressive",
        "messages": [{"role": "user", "content": "How to stay healthy?"}],
    }
    response = httpx.post(gateway + "/v1/chat/completions", json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    completion = response.json()
    return completion["choices"][0]["message"]["content"], completion["pice"]


def expected(report: dict[str, Any]) -> str:
    """The exact answer a run whose points ran where ``report`` says must have produced."""
    return "".join(
        (CLOUD_POINT if point["edge"] == "cloud" else EXPECTED_POINT).format(
            n=n, title=title, edge=point["edge"]
        )
        for n, (title, point) in enumerate(zip(TITLES, report["points"], strict=True), start=1)
    )


class Heartbeats:
    """Heartbeats for registered fake edges from a thread, as their agents send them: an edge
    the gateway no longer knows (404: it expired, say after beats came late on a busy machine)
    registers again, as ``edge_agent.membership`` does. ``stop(name)`` silences one (a killed
    edge), which then expires; ``add(name, url)`` starts beating for one that joined."""

    def __init__(self, gateway: str, urls: dict[str, str], interval: float = 0.1) -> None:
        self.gateway = gateway
        self._urls = dict(urls)
        self._lock = threading.Lock()
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.registered_again: list[str] = []

    def _beat(self, client: httpx.Client, name: str, url: str) -> None:
        response = client.post(f"/v1/edges/{name}/heartbeat")
        if response.status_code != 404:
            return
        with self._lock:
            if name not in self._urls:  # stopped meanwhile: a killed edge stays gone
                return
        client.post("/v1/edges", json=registration(name, url))
        self.registered_again.append(name)

    def _run(self) -> None:
        with httpx.Client(base_url=self.gateway, headers=AUTH, timeout=5) as client:
            while True:
                with self._lock:
                    beating = sorted(self._urls.items())
                for name, url in beating:
                    with contextlib.suppress(httpx.HTTPError):
                        self._beat(client, name, url)
                if self._done.wait(self._interval):
                    return

    def stop(self, name: str) -> None:
        with self._lock:
            self._urls.pop(name, None)

    def add(self, name: str, url: str) -> None:
        with self._lock:
            self._urls[name] = url

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def gateway_with(*edges: EdgeScript, **overrides: Any) -> Iterator[tuple[str, list[str]]]:
    """A fake cloud, fake edges not yet registered, and a gateway with registration on (under
    uvicorn); yields the gateway's URL and the edges' URLs, in order."""
    with contextlib.ExitStack() as stack:
        cloud = stack.enter_context(serve(fake_cloud(CloudScript())))
        urls = [stack.enter_context(serve(fake_edge(edge))) for edge in edges]
        gateway = stack.enter_context(serve(create_app(fleet_settings(cloud, **overrides))))
        yield gateway, urls
