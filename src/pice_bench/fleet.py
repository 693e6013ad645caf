"""``fleet-direct``: the testbed's hardware serving whole answers behind one load balancer.

PICE uses the cloud *and* the edges; cloud-only leaves the edges idle. So "PICE sustains more
load than cloud-only" could be nothing but "two cores beat one". This baseline gives the same
machines to a plain load balancer instead: every model server of the testbed (the cloud model
and each edge's model, each on its own core and behind its own link) answers whole questions,
and each request goes to the server with the fewest requests outstanding (least outstanding
requests, the usual policy for LLM serving fleets; ties rotate). PICE has to beat *that* to
show that splitting answers into points buys throughput, not only that more cores do.

Its answers come partly from the small edge model, so its quality is that mix; it is a
latency and throughput baseline, not judged by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """One OpenAI chat server of the fleet: its base URL (``…/v1``) and model id."""

    name: str
    base_url: str
    model: str
    # The cloud model's tokens count as cloud tokens, the edges' as edge tokens.
    is_cloud: bool = False
    # Bearer key the server requires (``pice up`` gives every edge agent a per-run token).
    api_key: str | None = None


class LeastOutstanding:
    """Pick the backend with the fewest requests in flight; ties go round-robin.

    The rotation matters when the fleet is idle: always picking the first of equals would put
    every request of a light load on the same server.
    """

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("a fleet needs at least one backend")
        self._outstanding = [0] * count
        self._next = 0

    @property
    def outstanding(self) -> list[int]:
        return list(self._outstanding)

    def acquire(self) -> int:
        n = len(self._outstanding)
        least = min(self._outstanding)
        for step in range(n):
            index = (self._next + step) % n
            if self._outstanding[index] == least:
                break
        self._outstanding[index] += 1
        self._next = (index + 1) % n
        return index

    def release(self, index: int) -> None:
        if self._outstanding[index] <= 0:
            raise ValueError(f"backend {index} has no request outstanding")
        self._outstanding[index] -= 1


def fleet_backends(
    cloud_url: str,
    cloud_model: str,
    edge_urls: Sequence[str],
    edge_models: Sequence[str],
    *,
    cloud_api_key: str | None = None,
    edge_api_key: str | None = None,
) -> tuple[Backend, ...]:
    """The cloud first, then each edge, as the testbed launched them."""
    edges = tuple(
        Backend(
            name=f"edge-{i + 1}", base_url=url.rstrip("/") + "/v1", model=model,
            api_key=edge_api_key,
        )
        for i, (url, model) in enumerate(zip(edge_urls, edge_models, strict=True))
    )  # fmt: skip
    cloud = Backend("cloud", cloud_url, cloud_model, is_cloud=True, api_key=cloud_api_key)
    return (cloud, *edges)
