"""More concurrent streams than httpx's default pool (100 connections per client) all get served.

Every stream in flight holds a connection to the cloud (and each edge job one to its edge);
with the default pool the 101st waited ``timeouts.pool`` seconds and failed with 503 (seen in
the soak at 200 streams). The pools are sized by ``cloud.max_connections`` and
``edge_client.max_connections``.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.chaos.support import ask
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript

STREAMS = 130


async def _statuses(url: str) -> list[int]:
    limits = httpx.Limits(max_connections=STREAMS + 10)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one() -> int:
            body = ask("pice-cloud", stream=True)
            async with client.stream("POST", url + "/chat/completions", json=body) as response:
                await response.aread()
                return response.status_code

        return list(await asyncio.gather(*(one() for _ in range(STREAMS))))


def test_more_streams_than_a_default_pool_are_all_served() -> None:
    # Each answer holds its cloud connection for over a second, so all are open at once; a
    # pool short of them would make the rest wait 0.5 s and fail. Opening 130 connections to
    # a fake cloud that shares this process (and its GIL) with the gateway and the clients
    # once took over the default 5 s connect timeout on a busy CI machine (ConnectionTimeout,
    # not a pool wait): the connect timeout is not what this test is about, so it is long.
    cloud = CloudScript(first_token_delay=1.5)
    timeouts = {"pool": 0.5, "connect": 60.0}
    with fake_stack(cloud, [EdgeScript("e1")], cloud_settings={"timeouts": timeouts}) as url:
        statuses = asyncio.run(_statuses(url))
    assert statuses == [200] * STREAMS
    assert len(cloud.requests) == STREAMS
