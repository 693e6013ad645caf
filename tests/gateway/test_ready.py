"""``GET /ready``: 200 only when the cloud answers and an edge is up; 503 naming what is missing.

The cloud's answer is cached (``cloud.ready_check_seconds``) so that a probe every second does
not become a request to vLLM every second.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
import pytest

from pice_gateway.readiness import CloudCheck, CloudProbe, readiness
from pice_gateway.upstream_http import UpstreamClient
from tests.gateway.conftest import fake_stack
from tests.gateway.fakes import CloudScript, EdgeScript
from tests.support.processes import free_port
from tests.support.upstream_mock import mock_client


def ready(url: str) -> httpx.Response:
    return httpx.get(url.removesuffix("/v1") + "/ready", timeout=10)


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.timeout(30)
def test_ready_when_the_cloud_answers_and_an_edge_is_up() -> None:
    with fake_stack(CloudScript(), [EdgeScript("good")]) as url:
        response = ready(url)
        assert response.status_code == 200
        assert response.json() == {
            "status": "ready",
            "cloud": {"up": True},
            "edges": {"good": True},
        }
        assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


@pytest.mark.timeout(30)
def test_not_ready_when_the_cloud_is_unreachable() -> None:
    cloud_down = {"base_url": dead_url() + "/v1", "ready_timeout_seconds": 2.0}
    with fake_stack(CloudScript(), [EdgeScript("good")], cloud_settings=cloud_down) as url:
        response = ready(url)
        assert response.status_code == 503
        body = response.json()
        assert body["missing"] == ["cloud"]
        assert body["cloud"]["up"] is False
        assert body["cloud"]["problem"] == "cloud unreachable: ClientConnectorError"
        assert body["edges"] == {"good": True}
        # Liveness does not depend on the upstreams.
        assert httpx.get(url.removesuffix("/v1") + "/health").status_code == 200


@pytest.mark.timeout(30)
def test_not_ready_when_the_cloud_answers_an_error() -> None:
    cloud = CloudScript(models_status=401)
    with fake_stack(cloud, [EdgeScript("good")]) as url:
        response = ready(url)
        assert response.status_code == 503
        assert response.json()["cloud"] == {
            "up": False,
            "problem": "cloud answered 401 to GET /models",
        }


@pytest.mark.timeout(30)
def test_not_ready_when_no_edge_is_up() -> None:
    with fake_stack(CloudScript(), [], extra_edges={"gone": dead_url()}) as url:
        response = ready(url)
        assert response.status_code == 503
        body = response.json()
        assert body["missing"] == ["edge"]
        assert body["cloud"] == {"up": True}
        assert body["edges"] == {"gone": False}


@pytest.mark.timeout(30)
def test_not_ready_with_no_edge_at_all_and_the_cloud_down() -> None:
    with fake_stack(CloudScript(models_status=503), []) as url:
        response = ready(url)
        assert response.status_code == 503
        assert response.json()["missing"] == ["cloud", "edge"]


@pytest.mark.timeout(30)
def test_probes_within_the_interval_reuse_one_cloud_answer() -> None:
    cloud = CloudScript()
    with fake_stack(
        cloud, [EdgeScript("good")], cloud_settings={"ready_check_seconds": 600}
    ) as url:
        for _ in range(20):
            assert ready(url).status_code == 200
        assert cloud.models_requests == 1


@pytest.mark.timeout(30)
def test_a_cloud_that_comes_back_makes_the_gateway_ready_again() -> None:
    cloud = CloudScript(models_status=503)
    # Interval 0: every probe asks again (the default reuses an answer for 5 s).
    with fake_stack(cloud, [EdgeScript("good")], cloud_settings={"ready_check_seconds": 0}) as url:
        assert ready(url).status_code == 503
        cloud.models_status = 200
        assert ready(url).status_code == 200
        assert cloud.models_requests == 2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting_cloud(answer: httpx.Response | Exception) -> tuple[UpstreamClient, list[str]]:
    seen: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        await asyncio.sleep(0)  # let concurrent probes pile up behind this one
        if isinstance(answer, Exception):
            raise answer
        return answer

    return mock_client(handle), seen


async def test_the_probe_asks_again_only_after_its_interval() -> None:
    client, seen = counting_cloud(httpx.Response(200, json={"data": []}))
    clock = Clock()
    probe = CloudProbe(client, interval=5.0, timeout=1.0, clock=clock)
    async with client:
        assert (await probe.check()).ok
        clock.now += 4.9
        assert (await probe.check()).ok
        assert seen == ["/v1/models"]
        clock.now += 0.1
        await probe.check()
        assert seen == ["/v1/models"] * 2


async def test_concurrent_probes_share_one_request() -> None:
    client, seen = counting_cloud(httpx.Response(200, json={"data": []}))
    probe = CloudProbe(client, interval=5.0, timeout=1.0, clock=Clock())
    async with client:
        checks = await asyncio.gather(*(probe.check() for _ in range(10)))
    assert all(check.ok for check in checks)
    assert seen == ["/v1/models"]


async def test_a_cloud_that_times_out_is_not_ready() -> None:
    client, _ = counting_cloud(aiohttp.SocketTimeoutError("slow"))
    probe = CloudProbe(client, interval=5.0, timeout=1.0, clock=Clock())
    async with client:
        check = await probe.check()
    assert check.problem == "cloud unreachable: SocketTimeoutError"


async def test_a_cloud_slower_than_the_probe_timeout_is_not_ready() -> None:
    async def stall(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={"data": []})

    probe = CloudProbe(mock_client(stall), interval=5.0, timeout=0.05, clock=Clock())
    check = await probe.check()
    assert check.problem == "cloud unreachable: it did not answer in time"


def test_readiness_names_each_missing_part() -> None:
    up, down = CloudCheck(None, checked_at=0.0), CloudCheck("x", checked_at=0.0)
    assert readiness(up, {"a": False, "b": True})[0] is True
    assert readiness(up, {"a": False})[1]["missing"] == ["edge"]
    assert readiness(down, {"a": True})[1]["missing"] == ["cloud"]
    assert readiness(down, {})[1]["missing"] == ["cloud", "edge"]
